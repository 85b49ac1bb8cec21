"""The routed responder: cache, then rate limit, then the router; every result says its route and why.

Order matters: a cache hit costs the backends nothing, so it is served before the rate limit charges the
request (limits protect backend capacity). A retry from the retry topic (attempt > 0) was charged on its
first pass and is not charged again.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from cloud import metrics
from cloud.cache import ResponseCache
from cloud.core import remaining_s, request_of
from cloud.core.replies import answered, failed, why_cloud
from cloud.ratelimit import RateLimiter
from cloud.router import Deferred, Failed, Router, Served
from schemas import Envelope, InferenceResult

log = logging.getLogger(__name__)

NOCACHE_TAG = "nocache"


class RoutedResponder:
    """Answers an uplink envelope through the cache, the rate limiter and the router. Never raises for a
    backend, cache or limiter failure: each becomes a result with a status and a reason."""

    def __init__(
        self,
        router: Router,
        *,
        default_deadline_ms: int,
        model_version: str,
        cache: ResponseCache | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.router = router
        self.cache = cache
        self.limiter = limiter
        self._default_deadline_ms = default_deadline_ms
        self._model_version = model_version

    async def respond(self, envelope: Envelope[Any], *, attempt: int = 0) -> Envelope[InferenceResult]:
        """The result for `envelope`: ok (cache or cloud), deferred, rejected or failed, with the reason."""
        started = time.monotonic()
        reply = await self._respond(envelope, attempt, started)
        metrics.ROUTES.labels(reply.data.route, reply.data.status).inc()
        metrics.INFERENCE_SECONDS.observe(time.monotonic() - started)
        return reply

    async def _respond(self, envelope: Envelope[Any], attempt: int, started: float) -> Envelope[InferenceResult]:
        request = request_of(envelope)
        left = remaining_s(envelope, self._default_deadline_ms, datetime.now(UTC))
        if left <= 0:
            return self._failed(envelope, f"deadline exceeded {-left:.1f}s ago, before routing", started)
        cacheable = self.cache is not None and NOCACHE_TAG not in request.tags
        if cacheable and self.cache is not None:
            hit = await self.cache.lookup(envelope.tenant, self._model_version, request)
            if hit is not None:
                reason = (f"{hit.kind} cache hit" + (f" (similarity {hit.similarity:.3f})"
                                                     if hit.kind == "semantic" else ""))
                return answered(envelope, hit.completion, latency_ms=_ms(started), route="cache",
                                reason=reason, scores={"similarity": hit.similarity,
                                                       "cache_threshold": self.cache.threshold})
        if self.limiter is not None and attempt == 0:
            decision = await self.limiter.check(envelope.tenant, envelope.device, request.prompt, request.system,
                                                request.max_tokens)
            if not decision.allowed:
                scores = {} if decision.retry_after_s is None else {"retry_after_ms": decision.retry_after_s * 1e3}
                return self._failed(envelope, f"rejected: {decision.reason}", started, status="rejected",
                                    scores=scores)
        outcome = await self.router.route(request, give_up_at=started + left)
        if isinstance(outcome, Served):
            reply = answered(envelope, outcome.completion, latency_ms=_ms(started),
                             reason=f"{outcome.reason} | {why_cloud(envelope)}", scores=outcome.scores)
            if cacheable and self.cache is not None:
                await self.cache.store(envelope.tenant, self._model_version, request, outcome.completion)
            return reply
        if isinstance(outcome, Deferred):
            return self._failed(envelope, f"deferred: {outcome.reason}", started, status="deferred",
                                scores={"retry_after_ms": outcome.retry_after_s * 1e3,
                                        "attempt": float(attempt + 1)})
        assert isinstance(outcome, Failed)
        return self._failed(envelope, outcome.reason, started)

    def _failed(self, envelope: Envelope[Any], reason: str, started: float, *, status: Any = "failed",
                scores: dict[str, float] | None = None) -> Envelope[InferenceResult]:
        primary = self.router.primary
        return failed(envelope, reason, model_id=primary.model_id, model_version=primary.model_version,
                      latency_ms=_ms(started), status=status, scores=scores)


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000.0
