"""Bounded exponential backoff with full jitter: how long to wait before the n-th retry."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry `attempt` (0-based): uniform in [0, min(max_s, base_s * 2**attempt)]."""

    base_s: float = 0.2
    max_s: float = 10.0

    def ceiling(self, attempt: int) -> float:
        """The largest delay retry `attempt` may wait; never above `max_s`."""
        return min(self.max_s, self.base_s * 2.0 ** min(attempt, 64))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """A jittered delay so replicas retrying together do not hammer the broker in step."""
        return (rng or random).uniform(self.ceiling(attempt) / 2, self.ceiling(attempt))
