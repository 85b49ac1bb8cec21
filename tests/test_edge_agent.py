"""The edge agent on the real Mosquitto with real llama.cpp (the tiny model); a test peer plays the cloud."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from ebrain.config import MqttSettings
from ebrain.inference.llama import LlamaCppEngine
from ebrain.models.tiny import write_tiny_llama
from ebrain.mqtt import MqttClient
from edge.agent import EdgeAgent
from edge.core.policy import PolicyConfig
from edge.engines import SwappableEngine
from edge.uplink import MqttUplink
from schemas import Escalation, InferenceRequest, InferenceResult, Telemetry, decode, encode, make
from schemas.topics import mqtt_downlink, mqtt_uplink

pytestmark = pytest.mark.integration
# Random weights: confidence is meaningless, so only tags and refusals decide here.
POLICY = PolicyConfig(min_confidence=0.0, escalate_on_truncation=False, refusal_patterns=())


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("models") / "tiny.gguf")


@contextlib.asynccontextmanager
async def agent_on(mqtt_settings: MqttSettings, model: Path, device: str, timeout_s: float = 20.0
                   ) -> AsyncIterator[EdgeAgent]:
    engine = await LlamaCppEngine.load(model, model_id="tiny", model_version="t1", n_threads=1)
    async with engine, MqttClient(mqtt_settings, client_id=f"edge-{device}") as client:
        agent = EdgeAgent(tenant="t-edge", device=device, engine=engine, mqtt=client, uplink=MqttUplink(client),
                          policy=POLICY, reply_timeout_s=timeout_s, telemetry_interval_s=3600)
        async with agent:
            yield agent


async def _fake_cloud(
    mqtt_settings: MqttSettings, device: str, seen: asyncio.Queue[bytes], replies: int, ready: asyncio.Event
) -> None:
    """Answer each escalation by publishing `replies` copies of a cloud result on the device's downlink."""
    async with MqttClient(mqtt_settings, client_id=f"cloud-{device}", clean_start=True) as cloud:
        await cloud.subscribe(mqtt_uplink("t-edge", device, "+"))
        ready.set()
        async for message in cloud.messages():
            await seen.put(message.payload)
            envelope = decode(message.payload)
            if not isinstance(envelope.data, Escalation) or replies == 0:
                continue
            result = InferenceResult(request_id=envelope.data.request.request_id, route="cloud", text="cloud says hi",
                                     model_id="big", model_version="1", latency_ms=5.0, reason="escalated")
            reply = make(result, tenant="t-edge", device=device, trace_id=envelope.trace_id)
            for _ in range(replies):
                await cloud.publish(mqtt_downlink("t-edge", device, "result"), encode(reply))


async def _next_of(seen: asyncio.Queue[bytes], kind: type) -> object:
    while True:
        envelope = decode(await asyncio.wait_for(seen.get(), 20))
        if isinstance(envelope.data, kind):
            return envelope


async def test_local_answer_is_published_and_escalation_gets_the_cloud_reply(
    mqtt_settings: MqttSettings, tiny_model: Path
) -> None:
    device = f"d{uuid.uuid4().hex[:8]}"
    seen: asyncio.Queue[bytes] = asyncio.Queue()
    ready = asyncio.Event()
    cloud = asyncio.create_task(_fake_cloud(mqtt_settings, device, seen, replies=2, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 10)  # the peer subscribes before the agent publishes
        async with agent_on(mqtt_settings, tiny_model, device) as agent:
            local = await agent.handle(InferenceRequest(request_id="q1", prompt="hello", max_tokens=8))
            assert local.result.route == "local"
            assert local.result.status == "ok"
            assert local.result.completion_tokens > 0
            published = await _next_of(seen, InferenceResult)
            assert published.data.request_id == "q1"  # type: ignore[attr-defined]
            assert published.data.prompt == "hello"  # type: ignore[attr-defined]  # ingest needs it

            cloud_answer = await agent.handle(
                InferenceRequest(request_id="q2", prompt="hard one", tags=("cloud",), max_tokens=8))
            assert cloud_answer.result.route == "cloud"
            assert cloud_answer.result.text == "cloud says hi"
            assert cloud_answer.escalation_reason == "cloud_tag:cloud"
            escalation = await _next_of(seen, Escalation)
            assert escalation.data.draft  # type: ignore[attr-defined]  # the local draft travels with it
            assert escalation.data.scores  # type: ignore[attr-defined]
            await agent.publish_telemetry()
            telemetry = await _next_of(seen, Telemetry)
            assert telemetry.data.model_version == "t1"  # type: ignore[attr-defined]
            assert agent.counters["replies"] == 1  # the duplicate reply was not taken as a second answer
    finally:
        cloud.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await cloud


async def test_no_reply_in_time_is_a_clear_failure(mqtt_settings: MqttSettings, tiny_model: Path) -> None:
    device = f"d{uuid.uuid4().hex[:8]}"
    async with agent_on(mqtt_settings, tiny_model, device, timeout_s=0.5) as agent:
        outcome = await agent.handle(InferenceRequest(request_id="q3", prompt="x", tags=("cloud",), max_tokens=4))
    assert outcome.result.status == "failed"
    assert outcome.result.reason.startswith("cloud_reply_timeout")


async def test_streamed_pieces_make_the_answer_and_a_full_queue_gets_a_published_reject(
    mqtt_settings: MqttSettings, tiny_model: Path
) -> None:
    device = f"d{uuid.uuid4().hex[:8]}"
    seen: asyncio.Queue[bytes] = asyncio.Queue()
    ready = asyncio.Event()
    cloud = asyncio.create_task(_fake_cloud(mqtt_settings, device, seen, replies=0, ready=ready))
    engine = await LlamaCppEngine.load(tiny_model, model_id="tiny", model_version="t1", n_threads=1, max_queue=0)
    try:
        await asyncio.wait_for(ready.wait(), 10)
        async with engine, MqttClient(mqtt_settings, client_id=f"edge-{device}") as client:
            agent = EdgeAgent(tenant="t-edge", device=device, engine=engine, mqtt=client,
                              uplink=MqttUplink(client), policy=POLICY, telemetry_interval_s=3600)
            async with agent:
                pieces: list[str] = []
                streamed = await agent.handle(
                    InferenceRequest(request_id="s1", prompt="hello", max_tokens=12), on_piece=pieces.append)
                assert len(pieces) > 1
                assert "".join(pieces) == streamed.result.text
                # max_queue=0: one request runs, the second is refused at once with a clear reason.
                outcomes = await asyncio.gather(*(
                    agent.handle(InferenceRequest(request_id=f"c{i}", prompt="hi", max_tokens=64)) for i in range(2)))
                statuses = sorted(o.result.status for o in outcomes)
                assert statuses == ["ok", "rejected"]
                rejected = next(o.result for o in outcomes if o.result.status == "rejected")
                assert rejected.reason == "local_queue_full"
                assert agent.counters["rejected"] == 1
                published = [await _next_of(seen, InferenceResult) for _ in range(3)]
                assert "rejected" in {p.data.status for p in published}  # type: ignore[attr-defined]
    finally:
        cloud.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await cloud


async def test_model_info_names_the_serving_model(tiny_model: Path) -> None:
    first = await LlamaCppEngine.load(tiny_model, model_id="tiny", model_version="m1", n_threads=1)
    second = await LlamaCppEngine.load(tiny_model, model_id="tiny", model_version="m2", n_threads=1)
    engine = SwappableEngine(first)
    assert REGISTRY.get_sample_value("ebrain_edge_model_info", {"model_id": "tiny", "model_version": "m1"}) == 1
    await engine.swap(second)
    assert REGISTRY.get_sample_value("ebrain_edge_model_info", {"model_id": "tiny", "model_version": "m2"}) == 1
    assert REGISTRY.get_sample_value("ebrain_edge_model_info", {"model_id": "tiny", "model_version": "m1"}) is None
    await engine.aclose()
