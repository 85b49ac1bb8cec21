"""Consistent placeholders within one record: the same value always becomes the same `<ENTITY_n>`.

One `PlaceholderBook` per record (prompt, draft and answer share it), so a name in the prompt and in the
answer gets one placeholder and the training pair still makes sense. Numbers follow first appearance.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from cloud.ingest.core.pii import PERSON, Span

_NOT_DIGIT = re.compile(r"\D")
_DIGIT_ENTITIES = frozenset({"PHONE_NUMBER", "CN_MOBILE", "CREDIT_CARD", "CN_RESIDENT_ID"})


def value_key(entity: str, value: str) -> str:
    """What makes two spellings one value: digits only for numbers, case-folded words otherwise."""
    if entity in _DIGIT_ENTITIES:
        digits = _NOT_DIGIT.sub("", value)
        return digits[-11:] if entity in {"PHONE_NUMBER", "CN_MOBILE"} else digits.upper()
    if entity == PERSON:
        return " ".join(value.split()).casefold()
    return value.strip().casefold()


class PlaceholderBook:
    """Hands out `<ENTITY_n>` per distinct value, numbering each entity type from 1."""

    def __init__(self) -> None:
        self._by_value: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}

    def placeholder(self, entity: str, value: str) -> str:
        """The placeholder of `value` as an `entity`, assigning the next number on first sight."""
        key = (entity, value_key(entity, value))
        found = self._by_value.get(key)
        if found is None:
            n = self._counts[entity] = self._counts.get(entity, 0) + 1
            found = self._by_value[key] = f"<{entity}_{n}>"
        return found

    def assign(self, text: str, spans: Sequence[Span]) -> None:
        """Number the spans of `text` in reading order (call per field, in field order)."""
        for span in sorted(spans, key=lambda s: s.start):
            self.placeholder(span.entity, text[span.start:span.end])

    def counts(self) -> dict[str, int]:
        """Distinct values seen per entity type."""
        return dict(self._counts)


def substitute(text: str, spans: Sequence[Span], book: PlaceholderBook) -> str:
    """`text` with each (non-overlapping) span replaced by its placeholder: the reference anonymizer."""
    out: list[str] = []
    last = 0
    for span in sorted(spans, key=lambda s: s.start):
        out.append(text[last:span.start])
        out.append(book.placeholder(span.entity, text[span.start:span.end]))
        last = span.end
    out.append(text[last:])
    return "".join(out)
