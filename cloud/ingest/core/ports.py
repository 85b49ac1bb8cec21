"""The ports the ingestion pipeline depends on; adapters implement them, tests may swap in small real ones."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from cloud.ingest.core.pii import Span
from cloud.ingest.core.placeholders import PlaceholderBook
from cloud.ingest.core.records import Curated, Quarantined


class Scanner(Protocol):
    """Finds PII: resolved spans per text; raises (any exception) when a text cannot be scanned."""

    def scan_batch(self, texts: Sequence[str]) -> list[list[Span]]: ...


class Anonymizer(Protocol):
    """Replaces spans by the book's placeholders."""

    def anonymize(self, text: str, spans: Sequence[Span], book: PlaceholderBook) -> str: ...


class DuplicateIndex(Protocol):
    """Remembers what was kept; names the duplicate reason of a record seen before (None: new)."""

    def check(self, tenant: str, record_id: str, exact_key: str, shingles: set[str]) -> str | None: ...

    def flush(self) -> None: ...


class Store(Protocol):
    """The dataset: which ids are new, and an atomic commit of one batch."""

    def unseen(self, record_ids: Iterable[str]) -> set[str]: ...

    def commit(
        self, kept: Sequence[Curated], dropped: Counter[str], quarantined: Sequence[Quarantined] = (),
        decided: Iterable[str] = (),
    ) -> dict[str, Any] | None: ...
