"""Pairs an escalation (prompt + edge draft) with the cloud's answer, by tenant, device and request id.

Either side may arrive first (they travel on different topics). State is bounded by count and by age; what
leaves unmatched is returned by reason so the caller counts it. Time is passed in, never read here.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from schemas import Envelope

JoinKey = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class Pair:
    """An escalation envelope and the cloud result envelope that answers it."""

    escalation: Envelope[Any]
    answer: Envelope[Any]


@dataclass(frozen=True, slots=True)
class Eviction:
    """A half that waited in vain: which side ("escalation" or "answer") and why ("expired", "full")."""

    side: str
    reason: str
    envelope: Envelope[Any]


class JoinWindow:
    """At most `capacity` unmatched halves, each kept at most `max_age_s`; the oldest goes first when full."""

    def __init__(self, capacity: int, max_age_s: float) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.max_age_s = max_age_s
        self._waiting: OrderedDict[tuple[str, JoinKey], tuple[float, Envelope[Any]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._waiting)

    def offer(self, side: str, key: JoinKey, envelope: Envelope[Any], now: float) -> tuple[Pair | None,
                                                                                          list[Eviction]]:
        """Add one half; returns the completed pair (if its partner waited) and any evictions it caused."""
        other = "answer" if side == "escalation" else "escalation"
        partner = self._waiting.pop((other, key), None)
        evicted = self.expire(now)
        if partner is not None:
            esc, ans = (envelope, partner[1]) if side == "escalation" else (partner[1], envelope)
            return Pair(esc, ans), evicted
        if (side, key) in self._waiting:  # a redelivered half: keep the first
            return None, evicted
        self._waiting[(side, key)] = (now, envelope)
        while len(self._waiting) > self.capacity:
            (old_side, _), (_, old) = self._waiting.popitem(last=False)
            evicted.append(Eviction(old_side, "full", old))
        return None, evicted

    def expire(self, now: float) -> list[Eviction]:
        """Drop halves older than `max_age_s` (insertion order is age order)."""
        evicted: list[Eviction] = []
        while self._waiting:
            (side, key), (since, envelope) = next(iter(self._waiting.items()))
            if now - since < self.max_age_s:
                break
            del self._waiting[(side, key)]
            evicted.append(Eviction(side, "expired", envelope))
        return evicted
