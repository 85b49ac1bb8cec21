"""Synthetic Q/A: the prompt that asks the model for pairs from a seed document, and the parser of its reply."""

from __future__ import annotations

import re

PROMPT = (
    "Read the document below and write {n} question and answer pairs that it answers.\n"
    "Use exactly this format for each pair:\nQ: <question>\nA: <answer>\n\nDocument:\n{document}\n"
)
_PAIR = re.compile(
    r"(?:^|\n)\s*(?:Q|Question)\s*[:.]\s*(.+?)\s*\n\s*(?:A|Answer)\s*[:.]\s*(.+?)"
    r"(?=\n\s*(?:Q|Question)\s*[:.]|\Z)",
    re.DOTALL | re.IGNORECASE,
)


def prompt_for(document: str, pairs: int = 3) -> str:
    """The request prompt for `pairs` Q/A pairs about `document`."""
    return PROMPT.format(n=pairs, document=document.strip())


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """(question, answer) pairs in a model reply written as `Q: ... / A: ...` blocks; [] if none."""
    return [(q.strip(), a.strip()) for q, a in _PAIR.findall(text) if q.strip() and a.strip()]


def chunks(text: str, max_chars: int = 1500) -> list[str]:
    """Split a seed document on blank lines into pieces of at most `max_chars` (long paragraphs are cut)."""
    out: list[str] = []
    current = ""
    for paragraph in (p.strip() for p in re.split(r"\n\s*\n", text)):
        if current and len(current) + len(paragraph) + 2 > max_chars:
            out.append(current)
            current = ""
        para = paragraph
        while len(para) > max_chars:
            out.append(para[:max_chars])
            para = para[max_chars:]
        current = f"{current}\n\n{para}" if current else para
    if current.strip():
        out.append(current)
    return out
