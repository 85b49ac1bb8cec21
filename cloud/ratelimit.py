"""Per-tenant and per-device rate limits in Redis: one atomic Lua token-bucket check over all buckets.

A request takes from every bucket (tenant requests/min, tenant tokens/min, device requests/min, device
tokens/min) or from none: the script checks all, then deducts all, using the Redis server's clock so
workers on different hosts agree. When Redis cannot be reached the configured policy applies: fail open
(allow, counted) or fail closed (reject, counted).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError

from cloud import metrics
from cloud.core.ratelimit import Quota, buckets, estimate_tokens

log = logging.getLogger(__name__)

# KEYS: bucket hashes. ARGV: per bucket, capacity, refill per ms and cost.
# Returns {0, 0} when every bucket had enough (all were charged), else {index (1-based), wait_ms}.
TOKEN_BUCKET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local levels = {}
for i, key in ipairs(KEYS) do
  local cap = tonumber(ARGV[3 * i - 2])
  local rate = tonumber(ARGV[3 * i - 1])
  local cost = tonumber(ARGV[3 * i])
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(state[1]) or cap
  local ts = tonumber(state[2]) or now
  tokens = math.min(cap, tokens + math.max(0, now - ts) * rate)
  if tokens < cost then
    if cost > cap then return {i, -1} end
    return {i, math.ceil((cost - tokens) / rate)}
  end
  levels[i] = tokens
end
for i, key in ipairs(KEYS) do
  local cap = tonumber(ARGV[3 * i - 2])
  local rate = tonumber(ARGV[3 * i - 1])
  redis.call('HSET', key, 'tokens', levels[i] - tonumber(ARGV[3 * i]), 'ts', now)
  redis.call('PEXPIRE', key, math.ceil(cap / rate) + 1000)
end
return {0, 0}
"""  # noqa: S105 - a Lua script, not a password


@dataclass(frozen=True)
class Decision:
    """Allowed, or why not and after how long a retry may pass (None: never, the request is too big)."""

    allowed: bool
    reason: str = ""
    retry_after_s: float | None = 0.0


class RateLimiter:
    """`check(tenant, device, prompt, system, max_tokens)` charges the buckets or says why it would not."""

    def __init__(self, redis: Redis, quota: Quota, *, on_error: Literal["open", "closed"] = "open",
                 prefix: str = "ebrain:rl") -> None:
        self._redis = redis
        self._quota = quota
        self._on_error = on_error
        self._prefix = prefix
        self._script = redis.register_script(TOKEN_BUCKET)

    async def check(self, tenant: str, device: str, prompt: str, system: str | None, max_tokens: int) -> Decision:
        """Take one request and its estimated tokens from every bucket, atomically, or reject."""
        tokens = estimate_tokens(prompt, system, max_tokens)
        wanted = buckets(self._quota, tenant, device, tokens, prefix=self._prefix)
        if not wanted:
            return Decision(True)
        args: list[float] = []
        for bucket in wanted:
            args += [bucket.capacity, bucket.refill_per_s / 1000.0, bucket.cost]
        try:
            index, wait_ms = await self._script(keys=[b.key for b in wanted], args=args)
        except (RedisError, OSError) as exc:
            metrics.RATELIMIT_ERRORS.labels(self._on_error).inc()
            log.warning("rate limit check failed", extra={"policy": self._on_error, "tenant": tenant,
                                                          "device": device, "error": repr(exc)[:200]})
            if self._on_error == "open":
                return Decision(True)
            return Decision(False, "rate limiter unavailable (fail closed)", 1.0)
        if int(index) == 0:
            return Decision(True)
        bucket = wanted[int(index) - 1]
        scope, what = bucket.scope, bucket.unit
        metrics.RATE_LIMITED.labels(scope).inc()
        if int(wait_ms) < 0:
            return Decision(False, f"request needs {tokens} tokens, over the {scope} limit of "
                                   f"{bucket.capacity:.0f} {what}/min", None)
        return Decision(False, f"{scope} rate limit: {bucket.capacity:.0f} {what}/min", int(wait_ms) / 1000.0)

