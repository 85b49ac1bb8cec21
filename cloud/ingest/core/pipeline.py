"""The curation pipeline over ports: redact, assess, deduplicate, commit. Shared by the streaming worker,
the Ray batch job (which runs `redact_and_assess` on workers and `dedupe` + commit on the driver) and synth.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cloud.ingest.core.normalize import exact_key, shingles
from cloud.ingest.core.pii import Span
from cloud.ingest.core.placeholders import PlaceholderBook
from cloud.ingest.core.ports import Anonymizer, DuplicateIndex, Scanner, Store
from cloud.ingest.core.quality import QualityPolicy, assess
from cloud.ingest.core.records import Curated, Quarantined, Record


@dataclass(slots=True)
class Outcome:
    """What one batch became. `dropped` counts by reason (duplicate ids from replays under 'replayed')."""

    kept: list[Curated] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    quarantined: list[Quarantined] = field(default_factory=list)
    pii: Counter[str] = field(default_factory=Counter)
    manifest: dict[str, Any] | None = None


def _fields(record: Record) -> list[str]:
    return [record.prompt, record.draft or "", record.answer]


class Pipeline:
    """Redaction before anything is stored; every record ends kept, dropped (with a reason) or quarantined."""

    def __init__(self, scanner: Scanner, anonymizer: Anonymizer, policy: QualityPolicy) -> None:
        self.scanner = scanner
        self.anonymizer = anonymizer
        self.policy = policy

    def redact(self, records: Sequence[Record]) -> tuple[list[Record], list[Quarantined]]:
        """Records with PII replaced by placeholders, and those that could not be scanned."""
        texts = [t for r in records for t in _fields(r)]
        try:
            spans = self.scanner.scan_batch(texts)
        except Exception:
            return self._redact_one_by_one(records)
        clean = [self._apply(r, spans[3 * i:3 * i + 3]) for i, r in enumerate(records)]
        return clean, []

    def _redact_one_by_one(self, records: Sequence[Record]) -> tuple[list[Record], list[Quarantined]]:
        clean: list[Record] = []
        bad: list[Quarantined] = []
        for record in records:
            try:
                spans = self.scanner.scan_batch(_fields(record))
            except Exception as exc:
                bad.append(Quarantined(record, f"scan_failed:{type(exc).__name__}"))
                continue
            clean.append(self._apply(record, spans))
        return clean, bad

    def _apply(self, record: Record, spans: Sequence[Sequence[Span]]) -> Record:
        book = PlaceholderBook()
        out = []
        for text, found in zip(_fields(record), spans, strict=True):
            book.assign(text, found)
            out.append(self.anonymizer.anonymize(text, found, book))
        counts = Counter(s.entity for found in spans for s in found)
        return record.with_text(out[0], out[2], out[1] if record.draft is not None else None, dict(counts))

    def redact_and_assess(self, records: Sequence[Record]) -> Outcome:
        """The parallel part: redaction and quality. Kept records are not yet deduplicated."""
        outcome = Outcome()
        clean, outcome.quarantined = self.redact(records)
        for record in clean:
            outcome.pii.update(record.pii)
            quality = assess(record.prompt, record.answer, record.draft, self.policy)
            if quality.drop:
                outcome.dropped[quality.drop] += 1
            else:
                outcome.kept.append(Curated(record, quality))
        return outcome

    @staticmethod
    def dedupe(outcome: Outcome, index: DuplicateIndex) -> Outcome:
        """The sequential part: exact then near duplicates, in `seq` order (first seen is kept)."""
        kept: list[Curated] = []
        for item in sorted(outcome.kept, key=lambda c: c.record.seq):
            r = item.record
            reason = index.check(r.tenant, r.record_id, exact_key(r.tenant, r.prompt, r.answer),
                                 shingles(r.prompt + "\n" + r.answer))
            if reason:
                outcome.dropped[reason] += 1
            else:
                kept.append(item)
        outcome.kept = kept
        return outcome

    def process(
        self, records: Sequence[Record], index: DuplicateIndex, store: Store, dropped: Counter[str] | None = None
    ) -> Outcome:
        """Redact, assess, dedupe and commit one batch; records already in the store are skipped.

        `dropped` adds the caller's own drop counts (e.g. unjoined halves) to this commit's counts.
        """
        new_ids = store.unseen(r.record_id for r in records)
        fresh: dict[str, Record] = {}
        for r in records:
            if r.record_id in new_ids and r.record_id not in fresh:
                fresh[r.record_id] = r
        outcome = self.dedupe(self.redact_and_assess(list(fresh.values())), index)
        replayed = len(records) - len(fresh)
        if replayed:
            outcome.dropped["replayed"] += replayed
        outcome.dropped.update(dropped or {})
        index.flush()
        kept_ids = {c.record.record_id for c in outcome.kept}
        unscanned = {q.record.record_id for q in outcome.quarantined}
        decided = [i for i in fresh if i not in kept_ids and i not in unscanned]
        outcome.manifest = store.commit(outcome.kept, outcome.dropped, outcome.quarantined, decided)
        return outcome
