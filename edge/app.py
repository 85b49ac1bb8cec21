"""Composition root of the edge agent: settings -> engine, MQTT link, spool, uplink, OTA, agent."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from ebrain.inference import Engine
from ebrain.inference.ports import EngineError
from edge.agent import EdgeAgent
from edge.engines import SwappableEngine
from edge.forward import StoreAndForward
from edge.link import MqttLink
from edge.ota import ModelManager, startup_models
from edge.settings import EdgeSettings
from edge.spool import Spool

log = logging.getLogger(__name__)


async def load_engine(settings: EdgeSettings, path: Path, model_id: str, version: str) -> Engine:
    """A llama.cpp engine within the node's budget: threads, context, batch and mmap from settings."""
    from ebrain.inference.llama import LlamaCppEngine  # noqa: PLC0415 - llama is heavy; import on use

    return await LlamaCppEngine.load(
        path, model_id=model_id, model_version=version, n_threads=settings.n_threads, n_ctx=settings.n_ctx,
        n_batch=settings.n_batch, use_mmap=settings.use_mmap, max_queue=settings.max_queue,
    )


async def startup_engine(settings: EdgeSettings) -> Engine:
    """The model of the last successful OTA update, else the previous one, else `settings.model`."""
    from ebrain.models import resolve_model  # noqa: PLC0415

    for model in startup_models(ota_dir(settings)):
        try:
            return await load_engine(settings, Path(model["path"]), model["model_id"], model["version"])
        except (EngineError, KeyError) as exc:
            log.warning("recorded model does not load, falling back", extra={"model": model, "error": str(exc)})
    path = Path(resolve_model(settings.model, settings.state_dir / "models"))
    return await load_engine(settings, path, settings.model_id or path.stem, settings.model_version)


def ota_dir(settings: EdgeSettings, device: str | None = None) -> Path:
    return settings.state_dir / "ota" / f"{settings.tenant}-{device or settings.device}"


@contextlib.asynccontextmanager
async def device_stack(settings: EdgeSettings, engine: Engine, device: str) -> AsyncIterator[EdgeAgent]:
    """One device's link, spool, uplink and agent around an already loaded engine (shared in simulations)."""
    link = MqttLink(settings.mqtt, client_id=f"ebrain-edge-{settings.tenant}-{device}")
    spool = Spool(settings.spool_file(device), max_entries=settings.spool_max_entries, ttl_s=settings.spool_ttl_s)
    forward = StoreAndForward(link, spool, publish_timeout_s=settings.publish_timeout_s)
    swappable = engine if isinstance(engine, SwappableEngine) else SwappableEngine(engine)
    agent: EdgeAgent | None = None

    async def report(_: str) -> None:
        if agent is not None:
            await agent.publish_telemetry()

    ota = ModelManager(
        swappable, loader=lambda p, m, v: load_engine(settings, p, m, v), models_dir=ota_dir(settings, device),
        smoke_max_latency_ms=settings.ota_smoke_max_latency_ms, download_timeout_s=settings.ota_download_timeout_s,
        report=report, canary=settings.canary,
    )
    async with link, forward:
        with contextlib.suppress(TimeoutError):
            await link.wait_connected(settings.connect_grace_s)  # else answer and spool
        agent = EdgeAgent(
            tenant=settings.tenant, device=device, engine=swappable, mqtt=link, uplink=forward,
            policy=settings.policy(), max_pending=settings.max_pending_escalations,
            reply_timeout_s=settings.reply_timeout_s, telemetry_interval_s=settings.telemetry_interval_s, ota=ota,
        )
        async with agent:
            cancelled = False
            try:
                yield agent
            except asyncio.CancelledError:
                cancelled = True  # stopping now (e.g. a signal): no drain; the spool keeps its messages
                raise
            finally:
                if cancelled:
                    log.info("stopped without drain", extra={"left": len(spool), "device": device})
                elif settings.drain_timeout_s and len(spool):
                    drained = await forward.flush(settings.drain_timeout_s)
                    log.info("shutdown drain", extra={"drained": drained, "left": len(spool), "device": device})


@contextlib.asynccontextmanager
async def running_agent(settings: EdgeSettings) -> AsyncIterator[EdgeAgent]:
    """Load the model, connect (or keep trying) to MQTT, and yield a started agent; everything closed on exit."""
    engine = SwappableEngine(await startup_engine(settings))
    try:
        async with device_stack(settings, engine, settings.device) as agent:
            yield agent
    finally:
        await engine.aclose()
