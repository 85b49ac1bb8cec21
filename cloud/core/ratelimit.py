"""Rate-limit policy: which token buckets a request draws from, and how much it costs.

The buckets live in Redis (an atomic Lua script in `cloud.ratelimit`); this module only names them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bucket:
    """One token bucket: `capacity` tokens, refilled at `capacity` per minute; a request takes `cost`."""

    key: str
    capacity: float
    cost: float
    scope: str = "tenant"  # or "device"
    unit: str = "requests"  # or "tokens"

    @property
    def refill_per_s(self) -> float:
        """Tokens regained per second (the full capacity over one minute)."""
        return self.capacity / 60.0


@dataclass(frozen=True)
class Quota:
    """Per-minute limits; 0 turns a limit off."""

    tenant_requests: int = 600
    tenant_tokens: int = 200_000
    device_requests: int = 60
    device_tokens: int = 20_000


def estimate_tokens(prompt: str, system: str | None, max_tokens: int) -> int:
    """Tokens charged up front: ~4 characters per prompt token plus the most the answer may use."""
    chars = len(prompt) + len(system or "")
    return max(1, chars // 4) + max_tokens


def buckets(quota: Quota, tenant: str, device: str, tokens: int, *, prefix: str = "ebrain:rl") -> list[Bucket]:
    """The buckets a request from `tenant`/`device` costing `tokens` draws from (limits of 0 left out)."""
    wanted = [
        (f"{prefix}:t:{tenant}:req", quota.tenant_requests, 1.0, "tenant", "requests"),
        (f"{prefix}:t:{tenant}:tok", quota.tenant_tokens, float(tokens), "tenant", "tokens"),
        (f"{prefix}:d:{tenant}:{device}:req", quota.device_requests, 1.0, "device", "requests"),
        (f"{prefix}:d:{tenant}:{device}:tok", quota.device_tokens, float(tokens), "device", "tokens"),
    ]
    return [Bucket(key, float(cap), cost, scope, unit) for key, cap, cost, scope, unit in wanted if cap > 0]
