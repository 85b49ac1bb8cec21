"""PII detection: the ingestion scanner (prefilter + NER on candidate sentences + nlp.pipe batches) against
plain Presidio defaults (default recognizers, full spaCy pipeline per text), on the same labelled corpus.

Recall: share of labelled spans at least half covered by some detected span (any entity type: a redaction
either hides the value or not). Precision: share of detected spans that overlap a labelled span; for
Presidio, over the entity types it reports that are PII in this corpus (DATE_TIME, NRP, LOCATION,
ORGANIZATION and URL are left out, since nothing labels them).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

DEFAULT_DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "pii_labelled.jsonl"
NOT_LABELLED = frozenset({"DATE_TIME", "NRP", "LOCATION", "ORGANIZATION", "URL"})


def _covered(label: list[Any], found: list[tuple[int, int]]) -> bool:
    start, end = label[0], label[1]
    inside = sum(max(0, min(end, e) - max(start, s)) for s, e in found)
    return bool(inside * 2 >= end - start)


def counts(docs: list[dict[str, Any]], predicted: list[list[tuple[int, int]]]) -> tuple[int, int, int, int]:
    """(labelled, labelled found, predicted, predicted that hit a label) for predicted (start, end) spans."""
    labels = hits = found = true_found = 0
    for doc, spans in zip(docs, predicted, strict=True):
        labels += len(doc["spans"])
        hits += sum(_covered(label, spans) for label in doc["spans"])
        found += len(spans)
        true_found += sum(any(s < lab[1] and lab[0] < e for lab in doc["spans"]) for s, e in spans)
    return labels, hits, found, true_found


def _ratios(c: tuple[int, ...], prefix: str = "") -> dict[str, float]:
    return {f"{prefix}recall": round(c[1] / max(1, c[0]), 4), f"{prefix}precision": round(c[3] / max(1, c[2]), 4)}


def _measure(scanner: Any, baseline: Any, docs: list[dict[str, Any]], batch: int) -> dict[str, Any]:
    texts = [d["text"] for d in docs]
    scanner.ner_chars = 0
    start = time.perf_counter()
    ours = [[(s.start, s.end) for s in spans] for i in range(0, len(texts), batch)
            for spans in scanner.scan_batch(texts[i:i + batch])]
    ours_s = time.perf_counter() - start
    ner_chars = scanner.ner_chars
    start = time.perf_counter()
    theirs = [[(r.start, r.end) for r in baseline.analyze(t, language="en") if r.entity_type not in NOT_LABELLED]
              for t in texts]
    theirs_s = time.perf_counter() - start
    return {"docs": len(docs), "seconds": ours_s, "presidio_seconds": theirs_s,
            "counts": counts(docs, ours), "presidio_counts": counts(docs, theirs),
            "ner_char_share": round(ner_chars / max(1, sum(len(t) for t in texts)), 3),
            "docs_per_s": round(len(texts) / ours_s, 1), "presidio_docs_per_s": round(len(texts) / theirs_s, 1),
            "speedup": round(theirs_s / ours_s, 2)}


def run(data: Path = DEFAULT_DATA, limit: int = 200, batch: int = 32) -> dict[str, Any]:
    """Docs per second and recall/precision for both detectors over the first `limit` documents.

    Measured per language (so each side's cost per language shows), then pooled for the headline numbers.
    """
    from cloud.ingest.adapters.presidio import PresidioScanner, load_nlp_engine, presidio_defaults  # noqa: PLC0415

    docs = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()[:limit]]
    engine = load_nlp_engine()
    scanner = PresidioScanner(engine, batch_size=batch)
    baseline = presidio_defaults(engine)
    scanner.scan_batch([d["text"] for d in docs[:4]])
    baseline.analyze(docs[0]["text"], language="en")

    by_lang = {lang: _measure(scanner, baseline, [d for d in docs if d["lang"] == lang], batch)
               for lang in sorted({d["lang"] for d in docs})}
    ours_s = sum(m.pop("seconds") for m in by_lang.values())
    theirs_s = sum(m.pop("presidio_seconds") for m in by_lang.values())
    ours = tuple(sum(c) for c in zip(*(m["counts"] for m in by_lang.values()), strict=True))
    theirs = tuple(sum(c) for c in zip(*(m["presidio_counts"] for m in by_lang.values()), strict=True))
    for m in by_lang.values():
        m.update(_ratios(m.pop("counts")), **_ratios(m.pop("presidio_counts"), "presidio_"))
    return {
        "bench": "pii",
        "docs": len(docs),
        "mean_doc_bytes": round(sum(len(d["text"].encode()) for d in docs) / len(docs)),
        "labelled_spans": ours[0],
        "by_lang": by_lang,
        "docs_per_s": round(len(docs) / ours_s, 1),
        "presidio_docs_per_s": round(len(docs) / theirs_s, 1),
        "speedup": round(theirs_s / ours_s, 2),
        **_ratios(ours),
        **_ratios(theirs, "presidio_"),
    }


def register(app: typer.Typer) -> None:
    """Add `ebrain bench pii`."""

    @app.command("pii")
    def pii(
        data: Annotated[Path, typer.Option(help="Labelled JSONL (see bench/pii_data.py).")] = DEFAULT_DATA,
        limit: Annotated[int, typer.Option(min=1, help="Documents to use.")] = 200,
        batch: Annotated[int, typer.Option(min=1, help="Texts per scanner batch (nlp.pipe).")] = 32,
        as_json: Annotated[bool, typer.Option("--json/--no-json", help="Also print a table first when off.")] = True,
    ) -> None:
        """PII scanner vs plain Presidio on ~1 KB English and Chinese texts: speed, recall, precision."""
        result = run(data, limit, batch)
        if not as_json:
            for key, value in result.items():
                typer.echo(f"{key:>20}: {value}")
        typer.echo(json.dumps(result))
