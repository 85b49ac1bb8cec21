"""Quality scoring of a (redacted) training pair: length, language, repetition, refusals, draft agreement.

Thresholds come from settings (`QualityPolicy`); `assess` names the first failed check as the drop reason.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from cloud.ingest.core.normalize import char_ngrams, jaccard, normalize

_CJK = re.compile(r"[\u3400-\u9fff]")
_LATIN = re.compile(r"[A-Za-z]")
_REFUSAL = re.compile(
    r"\b(?:I'?m sorry,? but I (?:can(?:no|')t|am unable)|I can(?:no|')t (?:help|assist) with"
    r"|as an AI(?: language)? model|I am not able to (?:help|provide))"
    "|抱歉[,\uff0c]?我无法|我不能(?:回答|提供|帮助)|作为一个?AI",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class QualityPolicy:
    """Drop thresholds. Agreement of the edge draft with the teacher at or above `max_agreement` means the
    edge already knew the answer: little to learn from the pair."""

    min_prompt_chars: int = 4
    min_answer_chars: int = 8
    max_answer_chars: int = 16_000
    languages: frozenset[str] = frozenset({"en", "zh"})
    max_repetition: float = 0.5
    max_agreement: float = 0.95
    min_score: float = 0.0


@dataclass(frozen=True, slots=True)
class Quality:
    """The verdict: a score in [0, 1], the language seen, the draft agreement, and why it was dropped."""

    score: float
    language: str
    repetition: float
    agreement: float | None
    drop: str | None


def language(text: str) -> str:
    """'zh' when CJK characters dominate the letters, 'en' for Latin script, else 'other' (or 'empty')."""
    cjk = len(_CJK.findall(text))
    latin = len(_LATIN.findall(text))
    if cjk + latin == 0:
        return "empty"
    if cjk >= latin / 4:
        return "zh"
    return "en" if latin > 0 else "other"


def repetition(text: str) -> float:
    """Share of word trigrams (or CJK character 4-grams) that repeat an earlier one: 0 none, ~1 a loop."""
    norm = normalize(text)
    if _CJK.search(norm):
        compact = norm.replace(" ", "")
        grams = [compact[i:i + 4] for i in range(len(compact) - 3)]
    else:
        tokens = norm.split()
        grams = [" ".join(tokens[i:i + 3]) for i in range(len(tokens) - 2)]
    if len(grams) < 4:
        return 0.0
    counts = Counter(grams)
    return sum(c - 1 for c in counts.values()) / len(grams)


def agreement(draft: str | None, answer: str) -> float | None:
    """Character-trigram Jaccard similarity of the edge draft and the teacher answer (None: no draft)."""
    if not draft:
        return None
    return round(jaccard(char_ngrams(draft), char_ngrams(answer)), 4)


def is_refusal(text: str) -> bool:
    """True when the answer declines rather than answers."""
    return _REFUSAL.search(text) is not None


def assess(prompt: str, answer: str, draft: str | None, policy: QualityPolicy) -> Quality:
    """Score a pair and name the first failed check (`drop`), or None when it may be kept."""
    lang = language(prompt + "\n" + answer)
    rep = repetition(answer)
    agree = agreement(draft, answer)
    length_ok = min(1.0, len(answer) / (policy.min_answer_chars * 8))
    score = round(max(0.0, length_ok * (1.0 - rep) * (1.0 - 0.5 * (agree or 0.0))), 4)
    checks = (
        ("short_prompt", len(prompt.strip()) < policy.min_prompt_chars),
        ("short_answer", len(answer.strip()) < policy.min_answer_chars),
        ("long_answer", len(answer) > policy.max_answer_chars),
        ("language", lang not in policy.languages),
        ("repetitive", rep > policy.max_repetition),
        ("refusal", is_refusal(answer)),
        ("draft_agrees", agree is not None and agree >= policy.max_agreement),
        ("low_score", score < policy.min_score),
    )
    drop = next((reason for reason, failed in checks if failed), None)
    return Quality(score, lang, round(rep, 4), agree, drop)
