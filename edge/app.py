"""Composition root of the edge agent: settings -> engine, MQTT client, uplink, agent."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from ebrain.mqtt import MqttClient
from edge.agent import EdgeAgent
from edge.settings import EdgeSettings
from edge.uplink import MqttUplink


@contextlib.asynccontextmanager
async def running_agent(settings: EdgeSettings) -> AsyncIterator[EdgeAgent]:
    """Load the model, connect to MQTT, and yield a started agent; everything is closed on exit."""
    from ebrain.inference.llama import LlamaCppEngine  # noqa: PLC0415 - llama is heavy; import on use
    from ebrain.models import resolve_model  # noqa: PLC0415

    path = resolve_model(settings.model, settings.state_dir / "models")
    engine = await LlamaCppEngine.load(
        Path(path),
        model_id=settings.model_id or Path(path).stem,
        model_version=settings.model_version,
        n_threads=settings.n_threads,
        n_ctx=settings.n_ctx,
        n_batch=settings.n_batch,
        max_queue=settings.max_queue,
    )
    client_id = f"ebrain-edge-{settings.tenant}-{settings.device}"
    try:
        async with MqttClient(settings.mqtt, client_id=client_id) as mqtt:
            agent = EdgeAgent(
                tenant=settings.tenant,
                device=settings.device,
                engine=engine,
                mqtt=mqtt,
                uplink=MqttUplink(mqtt),
                policy=settings.policy(),
                max_pending=settings.max_pending_escalations,
                reply_timeout_s=settings.reply_timeout_s,
                telemetry_interval_s=settings.telemetry_interval_s,
            )
            async with agent:
                yield agent
    finally:
        await engine.aclose()
