"""The response cache on a real Redis 8 (vector sets) and, if one listens on :6379, a Redis 7 without them."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from cloud.cache import ResponseCache
from cloud.embed import MiniLM
from ebrain.inference.ports import Completion
from schemas import InferenceRequest

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


@pytest.fixture(scope="module")
def embedder() -> MiniLM:
    return MiniLM()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def redis8(redis8_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis8_url)
    yield client
    await client.aclose()


def _cache(redis: Redis, embedder: MiniLM | None, **kwargs: object) -> ResponseCache:
    return ResponseCache(redis, embedder, prefix=f"test:{uuid.uuid4().hex[:8]}", **kwargs)  # type: ignore[arg-type]


def _req(prompt: str, system: str | None = None) -> InferenceRequest:
    return InferenceRequest(request_id="r1", prompt=prompt, system=system, max_tokens=32)


def _answer(text: str) -> Completion:
    return Completion(text=text, prompt_tokens=5, completion_tokens=3, mean_logprob=-0.2, finish_reason="stop",
                      latency_ms=900.0, model_id="smollm2", model_version="1")


async def test_exact_then_semantic_hit_scoped_by_tenant_and_model(redis8: Redis, embedder: MiniLM) -> None:
    cache = _cache(redis8, embedder)
    await cache.start()
    assert cache.semantic
    await cache.store("acme", "v1", _req("How do I reset my password?"), _answer("Use the reset link."))

    exact = await cache.lookup("acme", "v1", _req("how do I reset my password"))
    assert exact is not None
    assert (exact.kind, exact.completion.text, exact.completion.model_version) == ("exact", "Use the reset link.", "v1")
    similar = await cache.lookup("acme", "v1", _req("How can I reset my password?"))
    assert similar is not None
    assert similar.kind == "semantic"
    assert similar.similarity >= cache.threshold

    assert await cache.lookup("globex", "v1", _req("How do I reset my password?")) is None  # other tenant
    assert await cache.lookup("globex", "v1", _req("How can I reset my password?")) is None
    assert await cache.lookup("acme", "v2", _req("How can I reset my password?")) is None  # model rollout
    assert await cache.lookup("acme", "v1", _req("How can I reset my password?", system="Be terse.")) is None


async def test_guard_refuses_a_close_vector_with_reversed_meaning(redis8: Redis, embedder: MiniLM) -> None:
    cache = _cache(redis8, embedder)
    await cache.start()
    await cache.store("acme", "v1", _req("Should I enable TLS on the broker?"), _answer("Yes."))
    assert await cache.lookup("acme", "v1", _req("Should I not enable TLS on the broker?")) is None
    assert await cache.lookup("acme", "v1", _req("Is port 8883 right for TLS on the broker?")) is None


async def test_ttl_is_absolute_and_hits_do_not_extend_it(redis8: Redis, embedder: MiniLM) -> None:
    cache = _cache(redis8, embedder, ttl_s=2)
    await cache.start()
    await cache.store("acme", "v1", _req("What is MQTT?"), _answer("A protocol."))
    stored_at = time.monotonic()
    while time.monotonic() - stored_at < 1.0:  # keep hitting it for a second
        assert await cache.lookup("acme", "v1", _req("What is MQTT?")) is not None
        await asyncio.sleep(0.05)
    # Gone ~2 s after the write, however often it was hit, by both layers.
    await _until(lambda: cache.lookup("acme", "v1", _req("What is MQTT?")), deadline_s=3.5)
    assert time.monotonic() - stored_at < 3.6
    assert await cache.lookup("acme", "v1", _req("Explain what MQTT is")) is None


async def test_without_vector_sets_it_runs_as_an_exact_cache(embedder: MiniLM) -> None:
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 6379)) != 0:
            pytest.skip("no Redis 7 on :6379")
    redis7 = Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        cache = _cache(redis7, embedder)
        await cache.start()
        assert not cache.semantic
        await cache.store("acme", "v1", _req("What is MQTT?"), _answer("A protocol."))
        assert await cache.lookup("acme", "v1", _req("what is mqtt")) is not None
        assert await cache.lookup("acme", "v1", _req("Explain what MQTT is")) is None
    finally:
        await redis7.aclose()


async def test_redis_down_is_a_miss_not_an_error(embedder: MiniLM) -> None:
    dead = Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.5)
    cache = _cache(dead, embedder)
    await cache.start()
    assert not cache.semantic
    await cache.store("acme", "v1", _req("What is MQTT?"), _answer("A protocol."))
    assert await cache.lookup("acme", "v1", _req("What is MQTT?")) is None
    await dead.aclose()


async def _until(lookup: object, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while await lookup() is not None:  # type: ignore[operator]
        assert time.monotonic() < end, "cache entry outlived its TTL"
        await asyncio.sleep(0.05)
