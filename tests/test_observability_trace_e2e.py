"""One message = one trace, on the real brokers: an edge agent escalates through the gateway to the cloud worker
and gets its reply back. The test watches every hop from outside (an MQTT observer on the device's topics, a Kafka
consumer on the uplink and reply topics) and reads each hop's structured log for the parent it names.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from cloud.app import CloudWorker
from ebrain.config import KafkaSettings, MqttSettings
from ebrain.kafka import client_options
from ebrain.mqtt import MqttClient, MqttMessage
from ebrain.observability import trace
from edge.agent import EdgeAgent
from edge.uplink import MqttUplink
from gateway.app import Gateway
from schemas import InferenceRequest, decode
from schemas.topics import kafka_downlink, kafka_uplink
from tests.inprocess import in_process

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
DEADLINE_S = 60.0


async def _uplink_and_downlink(observer: MqttClient) -> tuple[MqttMessage, MqttMessage]:
    """The first escalation the observer saw on the device's uplink, and the first message on its downlink."""
    seen: dict[bool, MqttMessage] = {}
    async for message in observer.messages():
        seen.setdefault("/down/" in message.topic, message)
        if len(seen) == 2:
            return seen[False], seen[True]
    raise AssertionError("MQTT observer stopped")


async def _kafka_record(kafka: KafkaSettings, topic: str, msg_id: str) -> Any:
    """The record on `topic` whose CloudEvents id header is `msg_id` (read from the earliest offset)."""
    consumer = AIOKafkaConsumer(topic, auto_offset_reset="earliest", enable_auto_commit=False,
                                **client_options(kafka))
    await consumer.start()
    try:
        async with asyncio.timeout(DEADLINE_S):
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                for record in (r for records in batch.values() for r in records):
                    if dict(record.headers).get("ce_id") == msg_id.encode():
                        return record
    finally:
        await consumer.stop()


def _span(value: str | bytes | None) -> trace.SpanContext:
    ctx = trace.parse(value)
    assert ctx is not None, value
    return ctx


def _logged(caplog: pytest.LogCaptureFixture, logger: str, event: str, msg_id: str) -> logging.LogRecord:
    found = [r for r in caplog.records if r.name == logger and r.getMessage() == event
             and getattr(r, "msg_id", None) == msg_id]
    assert found, f"no {event!r} log from {logger} for {msg_id}"
    return found[-1]


async def test_one_escalation_is_one_trace_with_a_child_span_per_hop(
    mqtt_settings: MqttSettings, kafka_settings: KafkaSettings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="gateway.downlink")
    uid = uuid.uuid4().hex[:8]
    tenant, device = f"t{uid}", f"d{uid}"
    setup = await in_process(mqtt_settings, kafka_settings, tmp_path, uid)
    mqtt, policy, engine = setup.mqtt, setup.policy, setup.engine
    request = InferenceRequest(request_id=f"{uid}-1", prompt="plan", tags=("complex",), max_tokens=8)
    async with (Gateway(setup.gateway) as gateway, CloudWorker(setup.cloud) as worker, engine,
                MqttClient(mqtt, client_id=f"obs-{uid}", clean_start=True) as observer):
        await asyncio.wait_for(asyncio.gather(gateway.ready.wait(), worker.ready.wait()), DEADLINE_S)
        await observer.subscribe(f"ebrain/{tenant}/{device}/escalation", qos=1)
        await observer.subscribe(f"ebrain/{tenant}/{device}/down/#", qos=1)
        async with MqttClient(mqtt, client_id=f"dev-{uid}") as client:
            agent = EdgeAgent(tenant=tenant, device=device, engine=engine, mqtt=client, uplink=MqttUplink(client),
                              policy=policy, reply_timeout_s=DEADLINE_S, telemetry_interval_s=3600)
            async with agent, asyncio.timeout(DEADLINE_S):
                outcome = await agent.handle(request)
                uplink, downlink = await _uplink_and_downlink(observer)
    assert outcome.result.route == "cloud"
    escalation, reply = decode(uplink.payload), decode(downlink.payload)
    trace_id = escalation.trace_id
    assert reply.trace_id == trace_id
    kafka_up = await _kafka_record(kafka_settings, kafka_uplink("escalation"), escalation.id)
    kafka_down = await _kafka_record(kafka_settings, kafka_downlink("result"), reply.id)

    # Hop by hop: device -> MQTT, gateway -> Kafka, worker -> Kafka, gateway -> MQTT.
    hops = [_span(trace.from_properties(uplink.user_properties)), _span(trace.from_headers(kafka_up.headers)),
            _span(trace.from_headers(kafka_down.headers)), _span(trace.from_properties(downlink.user_properties))]
    assert {h.trace_id for h in hops} == {trace_id}
    assert len({h.span_id for h in hops}) == len(hops), hops
    device_span, gateway_up, worker_span, gateway_down = hops

    # Each hop's parent is the previous hop's span, as the hop logs it (a header carries only the sender's span).
    answered = _logged(caplog, "cloud.worker", "answered", escalation.id)
    assert (answered.trace_id, answered.span_id, answered.parent_span_id) == (  # type: ignore[attr-defined]
        trace_id, worker_span.span_id, gateway_up.span_id)
    published = _logged(caplog, "gateway.downlink", "downlink published", reply.id)
    assert (published.trace_id, published.span_id, published.parent_span_id) == (  # type: ignore[attr-defined]
        trace_id, gateway_down.span_id, worker_span.span_id)
    received = _logged(caplog, "edge.agent", "cloud reply", reply.id)
    assert received.trace_id == trace_id  # type: ignore[attr-defined]
    assert received.traceparent == gateway_down.header()  # type: ignore[attr-defined]
    escalated = [r for r in caplog.records if r.name == "edge.agent" and r.getMessage() == "escalated"]
    assert [r.trace_id for r in escalated] == [device_span.trace_id]  # type: ignore[attr-defined]
