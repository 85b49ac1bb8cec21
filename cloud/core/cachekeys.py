"""Cache keys and the false-hit guard: when two prompts may share one cached answer.

Embeddings put "Is port 1883 TLS?" next to "Is port 8883 TLS?" and "Should I enable X?" next to "Should I
not enable X?". A semantic hit is accepted only when the guard finds the same negations, the same numbers
and the same named entities in both prompts; everything else about the prompt may vary.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

_SPACE = re.compile(r"\s+")
_TRAIL = re.compile(r"[\s?.!]+$")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*")
_PLAIN_NOT = frozenset({"not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "without", "cannot"})
# Words that flip or swap what is asked: negations, and the antonym half of common pairs.
_POLARITY = frozenset({
    "except", "always", "on", "off", "allow", "block", "deny", "create", "delete", "remove", "add", "open",
    "close", "lock", "unlock", "increase", "raise", "maximum", "max", "most", "best", "fastest", "above",
    "after", "over", "enable", "start", "up", "down", "more", "higher", "largest", "biggest", "first", "last",
    "buy", "sell", "import", "export", "encrypt", "decrypt", "accept", "reject", "include", "exclude", "unless",
    "avoid", "disable", "stop",
    "prevent", "fail", "fails", "failed", "lacks", "lack", "against", "opposite", "worst", "least", "less",
    "fewer", "minimum", "min", "below", "under", "before", "decrease", "reduce", "lower", "smallest", "slowest",
})
_CURLY_APOSTROPHE = chr(0x2019)  # a typographic apostrophe: read "don<U+2019>t" as "don't"
_COMPARATIVES = frozenset({"than", "vs", "versus", "compared"})
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
    "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "twenty": "20", "hundred": "100",
    "thousand": "1000", "first": "1", "second": "2", "third": "3", "single": "1", "double": "2", "twice": "2",
    "half": "0.5", "dozen": "12",
}
# Capitalised words that start questions or are not names.
_NOT_NAMES = frozenset({
    "what", "how", "why", "when", "where", "who", "which", "is", "are", "can", "could", "should", "would",
    "do", "does", "did", "explain", "describe", "tell", "give", "list", "please", "i", "the", "a", "an", "in",
    "on", "for", "and", "or", "if", "my", "our", "we", "you", "it", "this", "that", "summarize", "compare",
    "write", "show", "make", "name", "define", "will", "was", "were", "has", "have", "hi", "hello", "there",
})


def normalize(prompt: str) -> str:
    """The form two prompts share when they are the same question: NFKC, lower case, one space, no trailer."""
    text = unicodedata.normalize("NFKC", prompt).strip().lower()
    return _TRAIL.sub("", _SPACE.sub(" ", text))


def exact_key(tenant: str, model_version: str, prompt: str, system: str | None, max_tokens: int) -> str:
    """A digest of everything that makes two requests the same request for the exact layer."""
    parts = "\x1f".join((tenant, model_version, normalize(prompt), normalize(system or ""), str(max_tokens)))
    return hashlib.sha256(parts.encode()).hexdigest()


@dataclass(frozen=True)
class Guard:
    """The facts a semantic hit must agree on: polarity words, numbers and named entities (in order)."""

    polarity: frozenset[str]
    numbers: frozenset[str]
    entities: tuple[str, ...]
    words: frozenset[str]
    comparative: bool = False

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form for storing beside the cached answer."""
        return {"pol": sorted(self.polarity), "num": sorted(self.numbers), "ent": list(self.entities),
                "words": sorted(self.words), "cmp": self.comparative}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Guard:
        """The inverse of `to_json` (missing fields read as empty)."""
        return cls(frozenset(data.get("pol", ())), frozenset(data.get("num", ())), tuple(data.get("ent", ())),
                   frozenset(data.get("words", ())), bool(data.get("cmp", False)))


def guard_of(prompt: str) -> Guard:
    """Polarity words (negations, antonym verbs), numbers (digits and number words) and named entities."""
    text = unicodedata.normalize("NFKC", prompt).replace(_CURLY_APOSTROPHE, "'")
    numbers = {n.replace(",", "") for n in _NUMBER.findall(text)}
    polarity: set[str] = set()
    entities: list[str] = []
    words: set[str] = set()
    for sentence in _SENTENCE.split(text):
        for position, raw in enumerate(_WORD.findall(sentence)):
            word = raw.lower()
            words.update(_parts(word))
            if word.endswith("n't") or word in _PLAIN_NOT:
                polarity.add("not")  # "don't", "do not", "never": the same polarity flip
            elif word in _POLARITY:
                polarity.add(word)
            if word in _NUMBER_WORDS:
                numbers.add(_NUMBER_WORDS[word])
            # A capital that is not the sentence's first letter, or an acronym/camelCase anywhere.
            named = raw[0].isupper() and position > 0 and word not in _NOT_NAMES
            if (named or any(c.isupper() for c in raw[1:])) and word not in entities:
                entities.append(word)
    comparative = bool(words & _COMPARATIVES)
    return Guard(frozenset(polarity), frozenset(numbers), tuple(entities), frozenset(words), comparative)


def mismatch(a: Guard, b: Guard) -> str | None:
    """Why the two prompts must not share an answer (a short reason), or None when the guard passes.

    Entities are matched against all the other prompt's words, case-insensitively ("what is mqtt" still
    names MQTT); when both prompts compare ("than", "vs") the entities must also come in the same order.
    """
    if a.polarity != b.polarity:
        return "negation mismatch"
    if a.numbers != b.numbers:
        return "number mismatch"
    if not (set(a.entities) <= b.words and set(b.entities) <= a.words):
        return "entity mismatch"
    if a.comparative and b.comparative and _order(a.entities, b.words) != _order(b.entities, a.words):
        return "entity order mismatch"
    return None


def _parts(word: str) -> set[str]:
    return {word, *word.split("-"), word.replace("-", "")} - {""}


def _order(entities: tuple[str, ...], words: frozenset[str]) -> tuple[str, ...]:
    return tuple(e for e in entities if e in words)
