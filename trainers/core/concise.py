"""Concise SFT targets: what the edge policy rewards is an answer that ends (end of turn) within its token budget.

The edge escalates a draft cut off at `max_tokens` whatever its confidence (`edge.core.policy`), so a teacher
answer longer than the budget teaches the edge to be cut off. A target is therefore the teacher's leading whole
sentences that fit `budget` tokens (counted with the edge model's tokenizer); the chat template closes it with
the end-of-turn token, so the model learns to stop. Text is never rewritten: a target is a prefix of the teacher
answer ending at a sentence end, or nothing (an answer whose first sentence does not fit teaches nothing).
"""

from __future__ import annotations

import re
from collections.abc import Callable

# A sentence ends at . ! or ? after a letter, digit, closing bracket or quote, followed by white space or the end.
# "1. Check the oil" (a list marker) is not a sentence end: the character before the dot must not stand alone.
_END = re.compile(r"(?<=[A-Za-z0-9)\"'%][.!?])(?=\s|$)")
_MARKER = re.compile(r"(?:^|\s)\d{1,2}[.)]$")


def sentence_ends(text: str) -> list[int]:
    """Offsets just past each whole sentence of `text`, in order; an unfinished tail has none."""
    ends: list[int] = []
    start = 0
    for match in _END.finditer(text):
        piece = text[start:match.end()].strip()
        if not piece or _MARKER.search(piece):
            continue  # "1." alone is a list marker, not a sentence: keep reading
        ends.append(match.end())
        start = match.end()
    return ends


def sentences(text: str) -> list[str]:
    """Whole sentences of `text` in order, each ending with its punctuation."""
    ends = sentence_ends(text)
    return [text[a:b].strip() for a, b in zip([0, *ends], ends, strict=False)]


def concise(answer: str, count_tokens: Callable[[str], int], budget: int) -> str | None:
    """The longest run of `answer`'s leading whole sentences within `budget` tokens, or None when none fits.

    `count_tokens` counts like the edge model's tokenizer (no BOS). The result is a prefix of the stripped
    answer, so it is the teacher's own words.
    """
    text = answer.strip()
    best: str | None = None
    for end in sentence_ends(text):
        if count_tokens(text[:end]) > budget:
            break
        best = text[:end]
    return best
