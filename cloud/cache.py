"""The response cache on Redis: an exact layer, then a semantic layer on Redis 8 vector sets.

Layout (all keys carry the tenant, and entries the model version, so tenants never share and a model
rollout starts cold):
- `{prefix}:x:{digest}`: the cached answer (JSON), SET with EX = ttl. Reads never extend it: the TTL is
  absolute from the write.
- `{prefix}:v:{tenant}`: a vector set per tenant; element = digest, attributes (SETATTR JSON) = model
  version, context hash (system prompt + max_tokens), expiry time and the false-hit guard. VSIM filters on
  model, context and expiry; an element whose answer key has expired is removed when met.

Without vector sets (Redis 7) the cache runs exact-only and says so (log + `ebrain_cloud_cache_semantic_enabled`).
Redis errors make a lookup a miss and a store a no-op: the cache never fails a request.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from cloud import metrics
from cloud.core.cachekeys import Guard, exact_key, guard_of, mismatch, normalize
from ebrain.inference.ports import Completion
from schemas import InferenceRequest

log = logging.getLogger(__name__)


class Embedder(Protocol):
    def embed(self, texts: list[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class Hit:
    """A cached answer and how it was found."""

    completion: Completion
    kind: str  # "exact" or "semantic"
    similarity: float


class ResponseCache:
    """`lookup` before routing, `store` after an `ok` answer. `semantic` is known after `start()`."""

    def __init__(
        self,
        redis: Redis,
        embedder: Embedder | None,
        *,
        ttl_s: int = 3600,
        threshold: float = 0.93,
        candidates: int = 4,
        prefix: str = "ebrain:cache",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._embedder = embedder
        self.ttl_s = ttl_s
        self.threshold = threshold
        self._candidates = candidates
        self._prefix = prefix
        self._clock = clock
        self.semantic = False

    async def start(self) -> None:
        """Probe for vector sets; without them (or without an embedder) run as an exact cache, and say so."""
        self.semantic = self._embedder is not None and await self._has_vector_sets()
        metrics.CACHE_SEMANTIC.set(1 if self.semantic else 0)
        if not self.semantic:
            why = "no embedder configured" if self._embedder is None else "Redis has no vector sets (VADD)"
            log.warning("semantic cache off, running as an exact cache", extra={"why": why})

    async def lookup(self, tenant: str, model_version: str, request: InferenceRequest) -> Hit | None:
        """A cached answer for this tenant and model version, or None (also when Redis fails)."""
        digest = exact_key(tenant, model_version, request.prompt, request.system, request.max_tokens)
        try:
            hit = await self._exact(digest, model_version)
            if hit is not None:
                metrics.CACHE_LOOKUPS.labels("exact_hit").inc()
                return hit
            if self.semantic:
                return await self._similar(tenant, model_version, request)
        except Exception as exc:  # Redis down, an embedding failure: a miss, never a failed request
            metrics.CACHE_LOOKUPS.labels("error").inc()
            log.warning("cache lookup failed, treating as a miss", extra={"error": repr(exc)[:200]})
            return None
        metrics.CACHE_LOOKUPS.labels("miss").inc()
        return None

    async def store(self, tenant: str, model_version: str, request: InferenceRequest,
                    completion: Completion) -> None:
        """Cache an answer for `ttl_s` (absolute). Redis failures are logged, never raised."""
        digest = exact_key(tenant, model_version, request.prompt, request.system, request.max_tokens)
        entry = {"text": completion.text, "model_id": completion.model_id, "prompt_tokens": completion.prompt_tokens,
                 "completion_tokens": completion.completion_tokens, "finish": completion.finish_reason,
                 "logprob": completion.mean_logprob}
        try:
            await self._redis.set(self._entry_key(digest), json.dumps(entry), ex=self.ttl_s)
            if self.semantic:
                await self._add_vector(tenant, model_version, request, digest)
        except Exception as exc:  # the answer is already good; caching it is best effort
            log.warning("cache store failed", extra={"error": repr(exc)[:200]})

    async def _exact(self, digest: str, model_version: str, similarity: float = 1.0,
                     kind: str = "exact") -> Hit | None:
        raw = await self._redis.get(self._entry_key(digest))
        if raw is None:
            return None
        data = json.loads(raw)
        completion = Completion(text=data["text"], prompt_tokens=data["prompt_tokens"],
                                completion_tokens=data["completion_tokens"], mean_logprob=data.get("logprob"),
                                finish_reason="length" if data.get("finish") == "length" else "stop",
                                latency_ms=0.0, model_id=data["model_id"], model_version=model_version)
        return Hit(completion, kind, similarity)

    async def _similar(self, tenant: str, model_version: str, request: InferenceRequest) -> Hit | None:
        vector = await self._vector(request.prompt)
        expr = (f".model == {json.dumps(model_version)} and .ctx == {json.dumps(_context(request))} "
                f"and .exp > {int(self._clock())}")
        reply = await _command(self._redis, "VSIM", self._set_key(tenant), "FP32", vector, "WITHSCORES",
                               "WITHATTRIBS", "COUNT", self._candidates, "FILTER", expr)
        guard = guard_of(request.prompt)
        outcome = "miss"
        for element, score, attrs in _triples(reply):
            if score < self.threshold:
                break
            why = mismatch(guard, Guard.from_json(json.loads(attrs).get("guard", {})))
            if why is not None:
                outcome = "guarded"
                continue
            hit = await self._exact(element, model_version, score, "semantic")
            if hit is None:  # the answer expired before the vector: forget the vector too
                await _command(self._redis, "VREM", self._set_key(tenant), element)
                continue
            metrics.CACHE_LOOKUPS.labels("semantic_hit").inc()
            return hit
        metrics.CACHE_LOOKUPS.labels(outcome).inc()
        return None

    async def _add_vector(self, tenant: str, model_version: str, request: InferenceRequest, digest: str) -> None:
        vector = await self._vector(request.prompt)
        attrs = json.dumps({"model": model_version, "ctx": _context(request), "exp": int(self._clock()) + self.ttl_s,
                            "guard": guard_of(request.prompt).to_json()})
        key = self._set_key(tenant)
        await _command(self._redis, "VADD", key, "FP32", vector, digest, "SETATTR", attrs)
        # A tenant that stops writing loses its whole set after two TTLs; live ones prune lazily.
        await self._redis.expire(key, self.ttl_s * 2)

    async def _vector(self, prompt: str) -> bytes:
        assert self._embedder is not None
        embedder = self._embedder
        rows = await asyncio.to_thread(embedder.embed, [normalize(prompt)])
        return bytes(rows[0].astype("<f4").tobytes())

    async def _has_vector_sets(self) -> bool:
        try:
            await _command(self._redis, "VCARD", f"{self._prefix}:probe")
        except ResponseError:
            return False
        except (RedisError, OSError) as exc:
            log.warning("cannot probe Redis for vector sets", extra={"error": repr(exc)[:200]})
            return False
        return True

    def _entry_key(self, digest: str) -> str:
        return f"{self._prefix}:x:{digest}"

    def _set_key(self, tenant: str) -> str:
        return f"{self._prefix}:v:{tenant}"


async def _command(redis: Redis, *args: Any) -> Any:
    """redis-py has no typed wrappers for the vector-set commands across its versions: send them raw."""
    return await redis.execute_command(*args)  # type: ignore[no-untyped-call]


def _context(request: InferenceRequest) -> str:
    """What besides the prompt must match for a semantic hit: the system prompt and the answer budget."""
    return hashlib.sha256(f"{normalize(request.system or '')}\x1f{request.max_tokens}".encode()).hexdigest()[:16]


def _triples(reply: Any) -> list[tuple[str, float, str]]:
    """VSIM ... WITHSCORES WITHATTRIBS as (element, score, attributes), best first (RESP2 flat or RESP3 map)."""
    if isinstance(reply, dict):
        items = [(k, *v) for k, v in reply.items()]
    else:
        flat = list(reply or [])
        items = [tuple(flat[i:i + 3]) for i in range(0, len(flat), 3)]
    return [(_text(e), float(s), _text(a) if a is not None else "{}") for e, s, a in items]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
