"""Which backend to try next, and why: circuit breakers, saturation and the defer/fail decision.

Pure: the adapters feed in outcomes (success, overload, failure), scraped saturation and `now`
(monotonic seconds); these functions say which backends to try in what order, or to defer, or to fail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum


class BreakerState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class Breaker:
    """Opens after `threshold` consecutive failures; after `cooldown_s` lets one probe through (half-open).

    A success closes it; a failed probe opens it again for another cooldown. Overload (429/503) is not a
    failure here: a busy backend is alive, and saturation routing handles it.
    """

    threshold: int = 3
    cooldown_s: float = 5.0
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False

    def state(self, now: float) -> BreakerState:
        """CLOSED, OPEN (within cooldown) or HALF_OPEN (cooldown over, a probe may go)."""
        if self.opened_at is None:
            return BreakerState.CLOSED
        if now - self.opened_at < self.cooldown_s:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def available(self, now: float) -> bool:
        """Whether `allow` would admit a request now, without taking the half-open probe slot."""
        state = self.state(now)
        return state is BreakerState.CLOSED or (state is BreakerState.HALF_OPEN and not self.probing)

    def allow(self, now: float) -> bool:
        """True when a request may go to this backend now; a half-open breaker admits one probe at a time."""
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self.probing:
            self.probing = True
            return True
        return False

    def success(self) -> None:
        """The backend answered: close."""
        self.failures = 0
        self.opened_at = None
        self.probing = False

    def failure(self, now: float) -> None:
        """The backend failed (down, timeout, 5xx): count, and open at the threshold or on a failed probe."""
        self.failures += 1
        if self.probing or self.failures >= self.threshold:
            self.opened_at = now
        self.probing = False

    def release(self) -> None:
        """A probe ended without a verdict (overload, cancelled): let the next request probe."""
        self.probing = False


@dataclass(frozen=True)
class Saturation:
    """What a backend's /metrics said: KV-cache usage in [0, 1] and requests waiting, at `seen_at`."""

    kv_cache_usage: float = 0.0
    waiting: float = 0.0
    running: float = 0.0
    seen_at: float = 0.0


@dataclass(frozen=True)
class Limits:
    """When a backend counts as saturated: scraped KV-cache use or waiting queue at or past these."""

    max_kv_cache_usage: float = 0.95
    max_waiting: float = 8.0
    # A 429/503 marks the backend saturated for this long, even without a scrape saying so.
    overload_hold_s: float = 1.0
    # Scrapes older than this are ignored (the backend may have drained or died since).
    stale_after_s: float = 10.0


@dataclass
class BackendState:
    """All the router knows about one backend."""

    name: str
    breaker: Breaker = field(default_factory=Breaker)
    saturation: Saturation = field(default_factory=Saturation)
    overloaded_until: float = 0.0

    def saturated(self, limits: Limits, now: float) -> str | None:
        """Why the backend is saturated now (a short reason), or None."""
        if now < self.overloaded_until:
            return "overloaded (429/503)"
        sat = self.saturation
        if now - sat.seen_at > limits.stale_after_s:
            return None
        if sat.kv_cache_usage >= limits.max_kv_cache_usage:
            return f"kv cache {sat.kv_cache_usage:.0%}"
        if sat.waiting >= limits.max_waiting:
            return f"{sat.waiting:.0f} waiting"
        return None

    def overloaded(self, limits: Limits, now: float) -> None:
        """Record a 429/503 (or a full local queue): skip this backend for `overload_hold_s`."""
        self.overloaded_until = now + limits.overload_hold_s


@dataclass(frozen=True)
class Plan:
    """The backends to try, in order, and why the others were skipped."""

    order: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]


def plan(states: list[BackendState], limits: Limits, now: float) -> Plan:
    """Backends in preference order that are neither open-circuited nor saturated.

    `states` is in preference order (primary first). Planning takes nothing: the caller calls
    `breaker.allow(now)` right before each attempt, so only a backend actually tried takes the half-open
    probe slot.
    """
    order: list[str] = []
    skipped: list[tuple[str, str]] = []
    for state in states:
        why = state.saturated(limits, now)
        if why is not None:
            skipped.append((state.name, why))
        elif not state.breaker.available(now):
            skipped.append((state.name, f"circuit {state.breaker.state(now).value}"))
        else:
            order.append(state.name)
    return Plan(tuple(order), tuple(skipped))


class Verdict(Enum):
    RETRY_NOW = "retry"
    DEFER = "defer"
    FAIL = "fail"


def after_round(*, remaining_s: float, backoff_s: float, rounds: int, max_rounds: int,
                retry_delay_s: float) -> Verdict:
    """Every backend refused this round: back off and retry in-process, defer to the retry topic, or fail.

    In-process retries stop after `max_rounds` (a worker slot is held meanwhile); a deferral needs the
    deadline to outlast the retry topic's delay, otherwise the request fails now with its reason.
    """
    if remaining_s <= 0:
        return Verdict.FAIL
    if rounds < max_rounds and backoff_s < remaining_s:
        return Verdict.RETRY_NOW
    if retry_delay_s < remaining_s:
        return Verdict.DEFER
    return Verdict.FAIL


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})?\s+([-+0-9.eEnNaInf]+)")
# vLLM renamed its KV-cache gauge (gpu_cache_usage_perc -> kv_cache_usage_perc); read either.
_KV = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
_WAITING = "vllm:num_requests_waiting"
_RUNNING = "vllm:num_requests_running"


def parse_vllm_metrics(text: str, now: float) -> Saturation:
    """Saturation from vLLM's Prometheus text; series summed over label sets (one per model/engine)."""
    sums: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name = match.group(1)
        if name in (*_KV, _WAITING, _RUNNING):
            try:
                sums[name] = sums.get(name, 0.0) + float(match.group(2))
            except ValueError:
                continue
    kv = max((sums[k] for k in _KV if k in sums), default=0.0)
    return Saturation(kv_cache_usage=kv, waiting=sums.get(_WAITING, 0.0), running=sums.get(_RUNNING, 0.0),
                      seen_at=now)
