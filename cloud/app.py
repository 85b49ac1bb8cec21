"""Composition root of the cloud worker: settings in, an engine, a broker and subscribers out."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack

from faststream.kafka import KafkaBroker

from cloud.backends.ports import Backend
from cloud.core import RecentIds
from cloud.idempotency import ReplyStore
from cloud.responder import EngineResponder, Responder
from cloud.routed import build_routed
from cloud.settings import CloudSettings
from cloud.worker import (
    RETRY_TOPIC,
    TOPICS,
    UPLINK_TOPICS,
    BrokerSink,
    UplinkHandler,
    build_broker,
    subscribe,
)
from ebrain.inference.ports import Engine
from ebrain.kafka import ensure_topics
from ebrain.kafka_ready import AssignmentWatch
from ebrain.lifecycle import Lifecycle

log = logging.getLogger(__name__)


async def build_engine(settings: CloudSettings) -> Engine:
    """The engine `settings.backend` names, loading `settings.model` (fetched into the state dir)."""
    if settings.backend == "llama":
        from ebrain.inference.llama import LlamaCppEngine  # noqa: PLC0415 - llama.cpp loads only when used
        from ebrain.models import default_cache_dir, resolve_model  # noqa: PLC0415

        token = settings.hf_token.get_secret_value() if settings.hf_token else None
        path = await asyncio.to_thread(resolve_model, settings.model, default_cache_dir(settings.state_dir),
                                       token=token)
        return await LlamaCppEngine.load(
            path,
            model_id=settings.model_id or path.stem,
            model_version=settings.model_version,
            n_threads=settings.n_threads,
            n_ctx=settings.n_ctx,
            n_batch=settings.n_batch,
            # Our semaphore admits max_concurrency calls at once: one runs, the rest wait in its queue.
            max_queue=settings.max_concurrency,
        )
    raise ValueError(f"unknown engine backend {settings.backend!r}")


class CloudWorker(Lifecycle):
    """The running worker: `async with CloudWorker(settings) as w: await w.ready.wait()`.

    start/stop are idempotent. An injected `engine` stays the caller's to close; a built one is closed here.
    `ready` is set once the consumers hold partitions of every uplink topic.
    """

    def __init__(self, settings: CloudSettings, *, engine: Engine | None = None,
                 backends: list[tuple[Backend, float]] | None = None) -> None:
        self.settings = settings
        self.ready = asyncio.Event()
        self.dedup = RecentIds(settings.dedup_size)
        self.responder: Responder | None = None
        self._engine = engine
        self._owns_engine = engine is None
        self._backends = backends
        self._broker: KafkaBroker | None = None
        self._stack: AsyncExitStack | None = None

    @property
    def engine(self) -> Engine | None:
        """The engine in use (None before start when it is built from settings)."""
        return self._engine

    async def start(self) -> None:
        """Create missing topics, load the engine, then start consuming. Cleans up if any step fails."""
        if self._broker is not None:
            return
        await ensure_topics(self.settings.kafka, TOPICS)
        broker = build_broker(self.settings.kafka)
        self._broker = broker
        self._stack = AsyncExitStack()
        try:
            responder, store = await self._responder()
            handler = UplinkHandler(responder, BrokerSink(broker), self.dedup, store=store,
                                    default_deadline_ms=self.settings.default_deadline_ms,
                                    max_attempts=self.settings.max_retry_attempts)
            subscribe(broker, handler, self.settings, AssignmentWatch((*UPLINK_TOPICS, RETRY_TOPIC), self.ready))
            self.responder = responder
            await broker.start()
        except BaseException:
            await self.stop()
            raise
        log.info("cloud worker started", extra={"group": self.settings.group_id, "backend": self.settings.backend})

    async def _responder(self) -> tuple[Responder, ReplyStore | None]:
        assert self._stack is not None
        if self.settings.backend == "router":
            routed = await build_routed(self.settings, self._stack, self._backends)
            return routed.responder, routed.store
        if self._engine is None:
            self._engine = await build_engine(self.settings)
        return EngineResponder(
            self._engine,
            max_concurrency=self.settings.max_concurrency,
            default_deadline_ms=self.settings.default_deadline_ms,
            retry_base_s=self.settings.retry_base_ms / 1000,
            retry_cap_s=self.settings.retry_cap_ms / 1000,
        ), None

    async def stop(self) -> None:
        """Stop consuming (in-flight messages finish within the graceful timeout), then close the engine."""
        broker, self._broker = self._broker, None
        stack, self._stack = self._stack, None
        self.ready.clear()
        self.responder = None
        try:
            if broker is not None:
                await broker.stop()
                log.info("cloud worker stopped")
            if stack is not None:
                await stack.aclose()
        finally:
            if self._owns_engine and self._engine is not None:
                engine, self._engine = self._engine, None
                await engine.aclose()

