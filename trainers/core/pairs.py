"""Training examples from dataset records: SFT pairs, DPO preference pairs, a deterministic held-out split.

Records are the rows `cloud.ingest.adapters.store.read_records` returns (dicts with kind, prompt, answer,
draft, agreement, ...). `distill` records hold an escalated prompt, the edge draft and the cloud (teacher)
answer; `feedback` rows (rating, preferred) are optional and add preference pairs when present.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar


@dataclass(frozen=True, slots=True)
class SftExample:
    """One supervised example: the prompt and the answer the edge model should learn to give."""

    record_id: str
    prompt: str
    answer: str


@dataclass(frozen=True, slots=True)
class DpoPair:
    """One preference: `chosen` over `rejected` for `prompt`, and where the preference came from."""

    record_id: str
    prompt: str
    chosen: str
    rejected: str
    source: str  # "teacher" (cloud answer over edge draft) or "feedback"


_T = TypeVar("_T", SftExample, DpoPair)


@dataclass(frozen=True, slots=True)
class PairConfig:
    """Which records teach. A draft that agrees with the teacher at or above `max_agreement` teaches nothing."""

    sft_kinds: frozenset[str] = frozenset({"distill", "synth"})
    max_agreement: float = 0.9
    min_answer_chars: int = 1
    heldout_fraction: float = 0.2
    seed: str = "ebrain"


def _text(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    return value.strip() if isinstance(value, str) else ""


def sft_examples(rows: Iterable[Mapping[str, Any]], config: PairConfig) -> list[SftExample]:
    """SFT examples from teacher-answered records (escalations and synthetic Q/A), in input order."""
    out: list[SftExample] = []
    for row in rows:
        prompt, answer = _text(row, "prompt"), _text(row, "answer")
        if row.get("kind") in config.sft_kinds and prompt and len(answer) >= config.min_answer_chars:
            out.append(SftExample(str(row.get("record_id", "")), prompt, answer))
    return out


def _agreement(row: Mapping[str, Any], draft: str, answer: str) -> float:
    value = row.get("agreement")
    if isinstance(value, int | float):
        return float(value)
    return token_overlap(draft, answer)


def dpo_pairs(rows: Iterable[Mapping[str, Any]], config: PairConfig) -> list[DpoPair]:
    """Preference pairs: the teacher answer over a disagreeing edge draft; user-preferred over rated-down."""
    out: list[DpoPair] = []
    for row in rows:
        rid, prompt, answer = str(row.get("record_id", "")), _text(row, "prompt"), _text(row, "answer")
        draft, preferred = _text(row, "draft"), _text(row, "preferred")
        if not prompt:
            continue
        teaches = row.get("kind") == "distill" and draft and answer and draft != answer
        if teaches and _agreement(row, draft, answer) < config.max_agreement:
            out.append(DpoPair(rid, prompt, answer, draft, "teacher"))
        if row.get("rating") == -1 and preferred and answer and preferred != answer:
            out.append(DpoPair(rid, prompt, preferred, answer, "feedback"))
    return out


def is_heldout(record_id: str, config: PairConfig) -> bool:
    """Stable split by a hash of the record id: the same record lands on the same side in every run."""
    digest = hashlib.sha256(f"{config.seed}\x1f{record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < config.heldout_fraction


def split(items: Sequence[_T], config: PairConfig) -> tuple[list[_T], list[_T]]:
    """(train, heldout) by `is_heldout`; never leaves either side empty when there are two or more items."""
    train = [x for x in items if not is_heldout(x.record_id, config)]
    held = [x for x in items if is_heldout(x.record_id, config)]
    if len(items) >= 2 and not held:
        held, train = train[-1:], train[:-1]
    elif len(items) >= 2 and not train:
        train, held = held[:1], held[1:]
    return train, held


def _tokens(text: str) -> list[str]:
    return [t for t in "".join(c.lower() if c.isalnum() else " " for c in text).split() if t]


def token_overlap(candidate: str, reference: str) -> float:
    """Token F1 between two texts (SQuAD-style): 1.0 identical bags of words, 0.0 nothing shared."""
    cand, ref = _tokens(candidate), _tokens(reference)
    if not cand or not ref:
        return 1.0 if cand == ref else 0.0
    remaining: dict[str, int] = {}
    for t in ref:
        remaining[t] = remaining.get(t, 0) + 1
    common = 0
    for t in cand:
        if remaining.get(t, 0) > 0:
            remaining[t] -= 1
            common += 1
    if common == 0:
        return 0.0
    precision, recall = common / len(cand), common / len(ref)
    return 2 * precision * recall / (precision + recall)
