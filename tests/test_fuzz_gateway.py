"""Fuzzing the gateway with malformed uplinks (tests/fuzz_strategies.py): the pure core refuses each one with
an expected reason and nothing else; a live gateway on real Mosquitto and Kafka dead-letters each one with its
reason, forwards every good message around them byte for byte, and keeps serving."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from ebrain.config import KafkaSettings, MqttSettings
from ebrain.mqtt import MqttClient
from ebrain.stack import private
from gateway.app import Gateway
from gateway.core import dead_letter_record, uplink_record, validate_uplink
from gateway.settings import GatewaySettings
from schemas import DeadLetter, InvalidMessage, Reason, decode
from schemas.deadletter import MAX_RAW_KEPT
from schemas.topics import KAFKA_DEADLETTER, mqtt_uplink
from tests.fuzz_strategies import Case, draw_cases, dumps, request_obj, uplink_cases
from tests.kafka_tail import read_until

TENANT, DEVICE = "acme", "dev-1"
MAX_BYTES = 8 * 1024
REGISTRY = frozenset({TENANT, "globex"})


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=uplink_cases(TENANT, DEVICE, max_bytes=MAX_BYTES, registry=REGISTRY))
def test_core_refuses_every_malformed_uplink_with_an_expected_reason(case: Case) -> None:
    with pytest.raises(InvalidMessage) as refused:
        validate_uplink(case.topic, case.raw, max_bytes=MAX_BYTES, tenants=REGISTRY)
    assert refused.value.reason in case.reasons, (case.label, refused.value.detail)
    # ... and what is refused can always be dead-lettered: a valid envelope under the cap, with the reason.
    record = dead_letter_record(case.topic, case.raw, refused.value)
    letter = decode(record.value)
    assert letter.data.reason == refused.value.reason.value
    assert base64.b64decode(letter.data.raw_b64) == case.raw[: len(base64.b64decode(letter.data.raw_b64))]
    assert letter.data.raw_size == len(case.raw)
    assert dict(record.headers)["reason"] == refused.value.reason.value.encode()


def test_every_malformation_is_generated() -> None:
    labels = {case.label for case in draw_cases(uplink_cases(TENANT, DEVICE, max_bytes=MAX_BYTES,
                                                             registry=REGISTRY), 400)}
    assert labels >= {"truncated", "huge", "long_field", "deep", "wrong_type", "wrong_envelope_type",
                      "invalid_utf8", "non_finite", "schema_version", "not_an_object", "missing", "extra",
                      "garbage", "forged_tenant", "forged_device", "wrong_kind", "unknown_tenant", "bad_topic"}


def test_a_replayed_id_is_valid_and_forwarded_unchanged() -> None:
    # The gateway is at-least-once and does not dedup: a replay is the workers' to absorb (tests/test_fuzz_workers).
    raw = dumps(request_obj(TENANT, DEVICE, "r1", "again"))
    topic = mqtt_uplink(TENANT, DEVICE, "request")
    first = uplink_record(validate_uplink(topic, raw, max_bytes=MAX_BYTES), raw=raw)
    second = uplink_record(validate_uplink(topic, raw, max_bytes=MAX_BYTES), raw=raw)
    assert first.value == second.value == raw


# -- live: a gateway process on a private Mosquitto and a private Kafka --------------------------------------


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[tuple[MqttSettings, KafkaSettings]]:
    """Private brokers: several hundred dead letters and forged topics stay out of the shared ones."""
    mqtt_port, kafka_port = private.free_port(), private.free_port()
    mosquitto = private.start_mosquitto(tmp_path, mqtt_port)
    tansu = private.start_tansu(tmp_path, kafka_port)
    yield MqttSettings(port=mqtt_port, session_expiry_s=0), KafkaSettings(bootstrap=f"127.0.0.1:{kafka_port}")
    private.stop(mosquitto)
    private.stop(tansu)


@pytest.fixture
async def gateway(brokers: tuple[MqttSettings, KafkaSettings]) -> AsyncIterator[Gateway]:
    mqtt, kafka = brokers
    uid = uuid.uuid4().hex[:8]
    settings = GatewaySettings(mqtt=mqtt, kafka=kafka, client_id=f"gw-{uid}", share_group=f"g{uid}",
                               downlink_group=f"gd-{uid}", max_message_bytes=MAX_BYTES, tenants=REGISTRY,
                               kafka_request_timeout_ms=3000, retry_max_s=0.5)
    async with Gateway(settings) as running:
        await asyncio.wait_for(running.ready.wait(), 30)
        yield running


async def _read_all(kafka: KafkaSettings, topic: str, until: Any, deadline_s: float = 60) -> list[Any]:
    return await read_until(kafka, topic, until, deadline_s)


def _letter_key(letter: DeadLetter) -> tuple[str, bytes, int]:
    """What identifies a dead letter's message: where it came from, its kept bytes and its true size."""
    return letter.source_topic, base64.b64decode(letter.raw_b64), letter.raw_size


async def test_live_gateway_dead_letters_every_malformed_uplink_and_loses_no_good_one(
    brokers: tuple[MqttSettings, KafkaSettings], gateway: Gateway
) -> None:
    mqtt, kafka = brokers
    bad: list[Case] = draw_cases(uplink_cases(TENANT, DEVICE, max_bytes=MAX_BYTES, registry=REGISTRY), 300)
    topic = mqtt_uplink(TENANT, DEVICE, "request")
    good = [dumps(request_obj(TENANT, DEVICE, f"g{n}", f"good {n} \u00e9\u4e2d")) for n in range(100)]
    sent_good: list[bytes] = []
    async with MqttClient(mqtt, client_id=f"fuzz-{uuid.uuid4().hex[:8]}", clean_start=True) as device:
        for n, case in enumerate(bad):
            await device.publish(case.topic, case.raw)
            if n % 3 == 0:
                raw = good[n // 3]
                await device.publish(topic, raw)
                sent_good.append(raw)
                if n % 30 == 0:  # a replayed id: the very same message again
                    await device.publish(topic, raw)
                    sent_good.append(raw)
    assert len(sent_good) == 110

    wanted = Counter(sent_good)
    requests = await _read_all(kafka, "ebrain.request",
                               lambda rs: not wanted - Counter(r.value for r in rs))
    assert {r.value for r in requests} == set(good), "only good messages reach ebrain.request, unchanged"
    assert all(r.key == f"{TENANT}/{DEVICE}".encode() for r in requests)

    expected: dict[tuple[str, bytes, int], list[frozenset[Reason]]] = defaultdict(list)
    for case in bad:
        expected[(case.topic, case.raw[:MAX_RAW_KEPT], len(case.raw))].append(case.reasons)

    def letters_of(records: list[Any]) -> Counter[tuple[str, bytes, int]]:
        return Counter(_letter_key(decode(r.value).data) for r in records)

    want_letters = Counter({k: len(v) for k, v in expected.items()})
    dead = await _read_all(kafka, KAFKA_DEADLETTER, lambda rs: not want_letters - letters_of(rs))
    for record in dead:
        letter = decode(record.value).data
        allowed = set().union(*expected[_letter_key(letter)])
        assert letter.reason in {r.value for r in allowed}, (letter.reason, letter.detail)
        assert dict(record.headers)["reason"] == letter.reason.encode()
    assert gateway.uplink_stats.deadlettered >= len(bad)
    assert gateway.ready.is_set()

    # Still alive and serving after all that.
    async with MqttClient(mqtt, client_id=f"fuzz-{uuid.uuid4().hex[:8]}", clean_start=True) as device:
        last = dumps(request_obj(TENANT, DEVICE, "after", "still serving"))
        await device.publish(topic, last)
    await _read_all(kafka, "ebrain.request", lambda rs: any(r.value == last for r in rs), deadline_s=30)
