"""Token-bucket rate limits per device and per tenant. Pure: the caller passes the clock in."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum


class Scope(StrEnum):
    """Which limit a message exceeded."""

    DEVICE = "device"
    TENANT = "tenant"


@dataclass(frozen=True, slots=True)
class Limit:
    """`rate_per_s` tokens refill per second up to `burst`; a rate of 0 means unlimited."""

    rate_per_s: float = 0.0
    burst: float = 1.0

    @property
    def enabled(self) -> bool:
        return self.rate_per_s > 0


@dataclass(slots=True)
class TokenBucket:
    """A bucket that starts full; `take` spends one token if there is one."""

    limit: Limit
    tokens: float
    updated: float

    def refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.limit.burst, self.tokens + elapsed * self.limit.rate_per_s)
        self.updated = now

    def take(self, now: float) -> bool:
        self.refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class _Buckets:
    """At most `max_keys` buckets; the least recently used one is forgotten (it restarts full)."""

    def __init__(self, limit: Limit, max_keys: int) -> None:
        self._limit = limit
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self.evicted = 0

    def get(self, key: str, now: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._buckets.popitem(last=False)
                self.evicted += 1
            bucket = self._buckets[key] = TokenBucket(self._limit, self._limit.burst, now)
        else:
            self._buckets.move_to_end(key)
        return bucket


class RateLimiter:
    """Per-device and per-tenant buckets. `check` spends a token from both, or from neither."""

    def __init__(self, device: Limit, tenant: Limit, *, max_keys: int = 100_000) -> None:
        self._device = _Buckets(device, max_keys) if device.enabled else None
        self._tenant = _Buckets(tenant, max_keys) if tenant.enabled else None

    @property
    def enabled(self) -> bool:
        return self._device is not None or self._tenant is not None

    @property
    def evicted(self) -> int:
        """Buckets forgotten because `max_keys` was reached (they restart full: a bounded leniency)."""
        return sum(b.evicted for b in (self._device, self._tenant) if b is not None)

    def check(self, tenant: str, device: str, now: float) -> Scope | None:
        """None if the message may pass (tokens spent), else the scope whose limit it exceeded."""
        dev = self._device.get(f"{tenant}/{device}", now) if self._device is not None else None
        if dev is not None and not dev.take(now):
            return Scope.DEVICE
        ten = self._tenant.get(tenant, now) if self._tenant is not None else None
        if ten is not None and not ten.take(now):
            if dev is not None:
                dev.tokens += 1.0  # refund: the message does not pass, so it must not cost the device
            return Scope.TENANT
        return None
