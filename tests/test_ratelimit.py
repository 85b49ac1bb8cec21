"""Token-bucket rate limits on a real Redis 8: atomic over tenant and device buckets, fail open or closed."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from cloud.core.ratelimit import Quota, buckets, estimate_tokens
from cloud.ratelimit import RateLimiter

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def redis(redis8_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis8_url)
    yield client
    await client.aclose()


def _limiter(redis: Redis, quota: Quota, **kwargs: object) -> RateLimiter:
    return RateLimiter(redis, quota, prefix=f"rl:{uuid.uuid4().hex[:8]}", **kwargs)  # type: ignore[arg-type]


async def test_buckets_and_token_estimate() -> None:
    assert estimate_tokens("x" * 40, None, 10) == 20
    names = [b.key for b in buckets(Quota(tenant_tokens=0), "acme", "d1", 5, prefix="p")]
    assert names == ["p:t:acme:req", "p:d:acme:d1:req", "p:d:acme:d1:tok"]


async def test_device_limit_rejects_past_capacity_and_other_devices_still_pass(redis: Redis) -> None:
    limiter = _limiter(redis, Quota(tenant_requests=100, tenant_tokens=0, device_requests=3, device_tokens=0))
    decisions = [await limiter.check("acme", "d1", "hi", None, 8) for _ in range(5)]
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert decisions[3].reason == "device rate limit: 3 requests/min"
    assert decisions[3].retry_after_s is not None
    assert 0 < decisions[3].retry_after_s <= 20.0  # one token back after 60/3 s
    assert (await limiter.check("acme", "d2", "hi", None, 8)).allowed


async def test_tenant_limit_spans_devices_and_a_rejection_charges_nothing(redis: Redis) -> None:
    limiter = _limiter(redis, Quota(tenant_requests=4, tenant_tokens=0, device_requests=2, device_tokens=0))
    results = [(await limiter.check("acme", f"d{i % 3}", "hi", None, 8)).allowed for i in range(6)]
    assert results.count(True) == 4
    blocked = await limiter.check("acme", "fresh", "hi", None, 8)
    assert not blocked.allowed
    assert blocked.reason.startswith("tenant rate limit")
    # The refused requests took nothing from the device buckets: a device that was refused by the tenant
    # bucket still has its own budget once the tenant has room again (another tenant shows it here).
    assert (await limiter.check("globex", "fresh", "hi", None, 8)).allowed


async def test_token_limit_and_oversized_requests(redis: Redis) -> None:
    limiter = _limiter(redis, Quota(tenant_requests=0, tenant_tokens=100, device_requests=0, device_tokens=0))
    assert (await limiter.check("acme", "d1", "x" * 40, None, 40)).allowed  # 50 tokens
    assert (await limiter.check("acme", "d1", "x" * 40, None, 40)).allowed
    third = await limiter.check("acme", "d1", "x" * 40, None, 40)
    assert not third.allowed
    assert third.reason == "tenant rate limit: 100 tokens/min"
    huge = await limiter.check("acme", "d2", "x" * 4000, None, 40)
    assert not huge.allowed
    assert huge.retry_after_s is None
    assert "over the tenant limit" in huge.reason


async def test_refill_over_time(redis: Redis) -> None:
    limiter = _limiter(redis, Quota(tenant_requests=600, tenant_tokens=0, device_requests=0, device_tokens=0))
    while (await limiter.check("acme", "d1", "hi", None, 1)).allowed:
        pass
    refused_at = time.monotonic()
    # 600/min = one token per 100 ms.
    while not (await limiter.check("acme", "d1", "hi", None, 1)).allowed:
        assert time.monotonic() - refused_at < 2.0, "bucket did not refill"
        await asyncio.sleep(0.02)


async def test_concurrent_checks_never_overspend(redis: Redis) -> None:
    limiter = _limiter(redis, Quota(tenant_requests=0, tenant_tokens=0, device_requests=10, device_tokens=0))
    decisions = await asyncio.gather(*(limiter.check("acme", "d1", "hi", None, 1) for _ in range(40)))
    assert sum(d.allowed for d in decisions) == 10


@pytest.mark.parametrize(("policy", "allowed"), [("open", True), ("closed", False)])
async def test_redis_down_fails_open_or_closed(policy: str, allowed: bool) -> None:
    dead = Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.5)
    limiter = _limiter(dead, Quota(), on_error=policy)
    decision = await limiter.check("acme", "d1", "hi", None, 8)
    assert decision.allowed is allowed
    if not allowed:
        assert "fail closed" in decision.reason
    await dead.aclose()
