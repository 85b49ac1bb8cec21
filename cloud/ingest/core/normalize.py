"""Normalization for dedup: one canonical form per text, its hash, and shingles for MinHash."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_SPACE = re.compile(r"\s+")
_PUNCT = re.compile(r"[^\w\s<>]", re.UNICODE)
_CJK = re.compile(r"[\u3400-\u9fff]")


def normalize(text: str) -> str:
    """NFKC, case-folded, punctuation dropped, whitespace collapsed: trivial variants compare equal."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE.sub(" ", _PUNCT.sub(" ", folded)).strip()


def exact_key(tenant: str, *fields: str) -> str:
    """Tenant-scoped hash of the normalized fields: equal keys are exact duplicates."""
    digest = hashlib.sha256(tenant.encode())
    for field in fields:
        digest.update(b"\x1f" + normalize(field).encode())
    return digest.hexdigest()


def shingles(text: str, *, words: int = 3, chars: int = 4) -> set[str]:
    """Word n-grams for alphabetic text, character n-grams where CJK dominates (it has no spaces)."""
    norm = normalize(text)
    if len(_CJK.findall(norm)) * 2 > len(norm.replace(" ", "")):
        compact = norm.replace(" ", "")
        return {compact[i:i + chars] for i in range(max(1, len(compact) - chars + 1))}
    tokens = norm.split()
    if len(tokens) < words:
        return {" ".join(tokens)}
    return {" ".join(tokens[i:i + words]) for i in range(len(tokens) - words + 1)}


def char_ngrams(text: str, n: int = 3) -> set[str]:
    """Character n-grams of the normalized text (for draft/answer agreement)."""
    norm = normalize(text)
    return {norm[i:i + n] for i in range(max(1, len(norm) - n + 1))} if norm else set()


def jaccard(a: set[str], b: set[str]) -> float:
    """|a & b| / |a | b|, 0.0 for two empty sets."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0
