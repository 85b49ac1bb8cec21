"""When a request stops being worth answering, and how long to wait between retries."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from cloud.core.replies import request_of
from schemas import Envelope


def deadline_at(envelope: Envelope[Any], default_ms: int) -> datetime:
    """The envelope's time plus the request's `deadline_ms` (or `default_ms` when it names none)."""
    ms = request_of(envelope).deadline_ms or default_ms
    return envelope.time + timedelta(milliseconds=ms)


def remaining_s(envelope: Envelope[Any], default_ms: int, now: datetime) -> float:
    """Seconds left before the deadline at `now` (negative once it has passed)."""
    return (deadline_at(envelope, default_ms) - now).total_seconds()


def backoff_s(attempt: int, *, base_s: float, cap_s: float, jitter: float) -> float:
    """Full-jitter exponential backoff: `jitter` (a draw in [0, 1]) times min(cap, base * 2**attempt).

    Jitter spreads the retries of many workers hitting the same overloaded engine apart.
    """
    if not 0.0 <= jitter <= 1.0:
        raise ValueError(f"jitter must lie in [0, 1], got {jitter}")
    return jitter * min(cap_s, base_s * 2.0 ** max(0, attempt))
