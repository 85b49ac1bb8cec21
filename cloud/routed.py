"""Builds the routed responder (router, cache, rate limiter, reply store) from `CloudSettings`."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass

from cloud.backends import OpenAIBackend
from cloud.backends.ports import Backend
from cloud.cache import ResponseCache
from cloud.core.ratelimit import Quota
from cloud.core.routing import Limits
from cloud.idempotency import ReplyStore
from cloud.pipeline import RoutedResponder
from cloud.ratelimit import RateLimiter
from cloud.router import Router, RouterPolicy
from cloud.settings import BackendSettings, CloudSettings

log = logging.getLogger(__name__)


@dataclass
class Routed:
    responder: RoutedResponder
    store: ReplyStore | None


def backend_of(cfg: BackendSettings) -> Backend:
    """An OpenAI-compatible backend client from its settings."""
    key = cfg.api_key.get_secret_value() if cfg.api_key else None
    return OpenAIBackend(cfg.name, cfg.url, model=cfg.model, tier=cfg.tier, model_version=cfg.model_version,
                         max_concurrency=cfg.max_concurrency, max_queue=cfg.max_queue, logprobs=cfg.logprobs,
                         api_key=key, extra_body=cfg.extra_body)


def router_of(settings: CloudSettings, backends: list[tuple[Backend, float]] | None = None) -> Router:
    """The router over `settings.backends` (or the given backends with their attempt timeouts)."""
    if backends is None:
        backends = [(backend_of(b), b.timeout_s) for b in settings.backends]
    policy = RouterPolicy(
        limits=Limits(max_kv_cache_usage=settings.max_kv_cache_usage, max_waiting=settings.max_waiting,
                      overload_hold_s=settings.overload_hold_ms / 1000),
        breaker_threshold=settings.breaker_threshold,
        breaker_cooldown_s=settings.breaker_cooldown_ms / 1000,
        max_rounds=settings.max_rounds,
        retry_base_s=settings.retry_base_ms / 1000,
        retry_cap_s=settings.retry_cap_ms / 1000,
        retry_delay_s=settings.retry_delay_ms / 1000,
    )
    return Router(backends, policy)


async def build_routed(settings: CloudSettings, stack: AsyncExitStack,
                       backends: list[tuple[Backend, float]] | None = None) -> Routed:
    """Everything behind the routed responder, registered on `stack` for closing in reverse order."""
    router = router_of(settings, backends)
    await stack.enter_async_context(router)
    cache = limiter = store = None
    if settings.redis_url:
        from redis.asyncio import Redis  # noqa: PLC0415

        redis = Redis.from_url(settings.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
        stack.push_async_callback(redis.aclose)
        store = ReplyStore(redis, ttl_s=settings.reply_ttl_s)
        if settings.cache.enabled:
            embedder = None
            if settings.cache.semantic:
                from cloud.embed import MiniLM  # noqa: PLC0415 - onnxruntime loads only with the cache on

                embedder = MiniLM()
            cache = ResponseCache(redis, embedder, ttl_s=settings.cache.ttl_s, threshold=settings.cache.threshold)
            await cache.start()
        if settings.ratelimit.enabled:
            rl = settings.ratelimit
            quota = Quota(rl.tenant_requests, rl.tenant_tokens, rl.device_requests, rl.device_tokens)
            limiter = RateLimiter(redis, quota, on_error=rl.on_redis_error)
    else:
        log.warning("no redis_url: no cache, no rate limits, no reply store (in-process dedup only)")
    responder = RoutedResponder(router, default_deadline_ms=settings.default_deadline_ms,
                                model_version=settings.model_version, cache=cache, limiter=limiter)
    return Routed(responder, store)
