"""An `Engine` whose model can be replaced while it serves: the OTA swap point.

`swap` makes the new engine current at once (new requests go to it), then waits for the requests already
running on the old engine to finish before closing it, so nothing in flight is cut off.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from ebrain.inference import Completion, Engine
from edge import metrics
from schemas import InferenceRequest


class SwappableEngine:
    """Delegates to the current engine; counts requests per engine so a retired one closes only when idle."""

    def __init__(self, engine: Engine) -> None:
        self._current = engine
        _publish_model(None, engine)
        self._inflight: dict[int, int] = {}
        self._idle = asyncio.Condition()
        self.tokens = 0  # completion tokens generated, all engines together (telemetry reads the rate)
        self.busy_s = 0.0

    @property
    def current(self) -> Engine:
        return self._current

    @property
    def model_id(self) -> str:
        return self._current.model_id

    @property
    def model_version(self) -> str:
        return self._current.model_version

    @property
    def queue_depth(self) -> int:
        return int(getattr(self._current, "queue_depth", 0))

    @property
    def rejected(self) -> int:
        return int(getattr(self._current, "rejected", 0))

    async def complete(self, request: InferenceRequest, *, on_piece: Callable[[str], None] | None = None
                       ) -> Completion:
        """Answer on the engine current at call time (it stays open until this returns)."""
        engine = self._current
        key = id(engine)
        self._inflight[key] = self._inflight.get(key, 0) + 1
        try:
            kwargs: dict[str, Any] = {"on_piece": on_piece} if on_piece is not None else {}
            completion = await engine.complete(request, **kwargs)
        finally:
            async with self._idle:
                self._inflight[key] -= 1
                self._idle.notify_all()
        self.tokens += completion.completion_tokens
        self.busy_s += completion.latency_ms / 1000
        return completion

    async def swap(self, engine: Engine) -> Engine:
        """Make `engine` current, wait until the old one is idle, close it, and return it (closed)."""
        old, self._current = self._current, engine
        _publish_model(old, engine)
        key = id(old)
        async with self._idle:
            await self._idle.wait_for(lambda: self._inflight.get(key, 0) == 0)
        self._inflight.pop(key, None)
        await old.aclose()
        return old

    async def aclose(self) -> None:
        await self._current.aclose()


def _publish_model(old: Engine | None, new: Engine) -> None:
    """Keep `ebrain_edge_model_info` naming exactly the model that serves new requests."""
    if old is not None:
        with contextlib.suppress(KeyError):
            metrics.MODEL.remove(old.model_id, old.model_version)
    metrics.MODEL.labels(new.model_id, new.model_version).set(1)
