"""Training records: built from schema objects, identified so that a replay maps to the same id."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime

from cloud.ingest.core.quality import Quality

RECORD_SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class Record:
    """One training example before or after redaction. `seq` orders records for deterministic dedup."""

    record_id: str
    tenant: str
    device: str
    kind: str  # "local" (edge answered), "distill" (escalation + cloud answer), "synth"
    request_id: str
    prompt: str
    answer: str
    created: datetime
    draft: str | None = None
    model_id: str = ""
    model_version: str = ""
    draft_model_id: str | None = None
    source_ids: tuple[str, ...] = ()
    seq: int = 0
    pii: dict[str, int] = field(default_factory=dict)

    def with_text(self, prompt: str, answer: str, draft: str | None, pii: dict[str, int]) -> Record:
        """The same record with redacted text and its PII counts."""
        return replace(self, prompt=prompt, answer=answer, draft=draft, pii=pii)

    @property
    def date(self) -> str:
        """The partition date (UTC day of creation)."""
        return self.created.strftime("%Y-%m-%d")


def record_id(tenant: str, device: str, request_id: str, kind: str) -> str:
    """Deterministic id: the same request of the same device and kind is one record, however often replayed."""
    return hashlib.sha256(f"{tenant}\x1f{device}\x1f{request_id}\x1f{kind}".encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Curated:
    """A redacted record that passed every check, with its quality verdict: what the dataset stores."""

    record: Record
    quality: Quality


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A record that could not be scanned: kept apart from the dataset, with why."""

    record: Record
    reason: str
