"""Replies stored by request message id in Redis, so a redelivery or replay gets the same answer.

The first final reply for a message id is kept (SET NX, with a TTL); a later delivery of that id is
answered with the stored envelope byte for byte (same reply id, so downstream consumers dedup it) and
never runs inference again. Redis failures degrade to the in-process dedup set, logged.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from schemas import Envelope, InferenceResult, InvalidMessage, decode, encode

log = logging.getLogger(__name__)


class ReplyStore:
    """`get(message_id)` before answering, `put(message_id, reply)` before sending the reply."""

    def __init__(self, redis: Redis, *, ttl_s: int = 86_400, prefix: str = "ebrain:reply") -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._prefix = prefix

    async def get(self, message_id: str) -> Envelope[InferenceResult] | None:
        """The stored reply for `message_id`, or None (not answered yet, expired, or Redis unreachable)."""
        try:
            raw = await self._redis.get(self._key(message_id))
        except (RedisError, OSError) as exc:
            log.warning("reply store unreachable", extra={"msg_id": message_id, "error": repr(exc)[:200]})
            return None
        if raw is None:
            return None
        try:
            envelope: Envelope[Any] = decode(raw if isinstance(raw, bytes) else raw.encode())
        except InvalidMessage:
            return None
        return envelope if isinstance(envelope.data, InferenceResult) else None

    async def put(self, message_id: str, reply: Envelope[InferenceResult]) -> Envelope[InferenceResult]:
        """Keep `reply` unless one is stored already; returns the reply that wins (send that one)."""
        key = self._key(message_id)
        try:
            if await self._redis.set(key, encode(reply), ex=self._ttl_s, nx=True):
                return reply
            stored = await self.get(message_id)
        except (RedisError, OSError) as exc:
            log.warning("reply store unreachable", extra={"msg_id": message_id, "error": repr(exc)[:200]})
            return reply
        return stored or reply

    def _key(self, message_id: str) -> str:
        return f"{self._prefix}:{message_id}"
