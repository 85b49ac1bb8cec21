"""A broker restart loses no uplink: the gateway's plain subscription survives it in a persistent session.

Mosquitto (persistence on) is stopped cleanly and started again; a device publishes while the gateway cannot
reach the broker yet (a fault proxy sits between them), so the message can only be kept for the gateway's
restored session. With a shared subscription ($share/..., not restored by Mosquitto 2.0) it would be PUBACKed
to the device and dropped; see README, Reliability.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer

from ebrain.chaos.proxy import FaultProxy
from ebrain.config import KafkaSettings, MqttSettings
from ebrain.kafka import client_options
from ebrain.mqtt import MqttClient
from ebrain.stack import private
from gateway.app import Gateway
from gateway.settings import GatewaySettings
from schemas import InferenceRequest, decode, encode, make
from schemas.topics import mqtt_uplink, mqtt_uplink_filter

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@dataclass
class Broker:
    """A private Mosquitto with persistence that the test can restart on the same port and data."""

    workdir: Path
    port: int
    proc: Any = None

    def start(self) -> None:
        lines = ["allow_anonymous true", "persistence true", f"persistence_location {self.workdir}/",
                 "autosave_interval 1"]
        if os.geteuid() == 0:
            lines.append("user root")  # else it switches to user mosquitto, who cannot write our workdir
        self.proc = private.start_mosquitto(self.workdir, self.port, lines)

    def stop(self) -> None:
        if self.proc is not None:
            private.stop(self.proc)  # SIGTERM: Mosquitto writes its persistence file on the way out
            self.proc = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    running = Broker(tmp_path, private.free_port())
    running.start()
    yield running
    running.stop()


@pytest_asyncio.fixture
async def gateway_link(broker: Broker) -> AsyncIterator[FaultProxy]:
    """The gateway's way to the broker, which the test can cut while the broker restarts."""
    proxy = FaultProxy(broker.port, name="gateway-mqtt")
    await proxy.start()
    yield proxy
    await proxy.stop()


async def _uplink_ids(kafka: KafkaSettings, key: bytes, want: set[str], deadline_s: float) -> set[str]:
    """Request ids of `ebrain.request` records with `key`, read from the start until `want` are seen."""
    consumer = AIOKafkaConsumer("ebrain.request", **client_options(kafka), group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    seen: set[str] = set()
    try:
        end = time.monotonic() + deadline_s
        while not want <= seen and time.monotonic() < end:
            batches = await consumer.getmany(timeout_ms=200)
            seen |= {decode(r.value).data.request_id for recs in batches.values() for r in recs if r.key == key}
    finally:
        await consumer.stop()
    return seen


async def _publish(port: int, client_id: str, topic: str, payload: bytes) -> None:
    """One QoS 1 publish from a device, returning once the broker PUBACKed it."""
    async with MqttClient(MqttSettings(port=port), client_id=client_id, clean_start=True) as device:
        await device.publish(topic, payload, 1)


async def test_uplink_published_while_the_gateway_is_away_after_a_broker_restart_reaches_kafka(
    broker: Broker, gateway_link: FaultProxy, kafka_settings: KafkaSettings
) -> None:
    uid = uuid.uuid4().hex[:8]
    tenant, dev = f"restart-{uid}", "d1"
    topic, key = mqtt_uplink(tenant, dev, "request"), f"{tenant}/{dev}".encode()

    def request(n: int) -> bytes:
        return encode(make(InferenceRequest(request_id=f"r{n}", prompt=f"p{n}"), tenant=tenant, device=dev))

    # The default settings: a plain subscription in a persistent session (session expiry 3600 s).
    settings = GatewaySettings(mqtt=MqttSettings(port=gateway_link.port), kafka=kafka_settings,
                               client_id=f"gw-restart-{uid}", downlink_group=f"gw-restart-down-{uid}",
                               kafka_request_timeout_ms=3000, retry_max_s=0.5)
    assert settings.share_group is None
    async with Gateway(settings) as gateway:
        await asyncio.wait_for(gateway.ready.wait(), 30)
        await _publish(broker.port, f"dev-{uid}-a", topic, request(0))
        assert "r0" in await _uplink_ids(kafka_settings, key, {"r0"}, 20)

        await gateway_link.set_mode("down")  # the gateway stays away until the device has published
        broker.stop()
        broker.start()
        await _publish(broker.port, f"dev-{uid}-b", topic, request(1))  # PUBACKed by the restarted broker
        await gateway_link.set_mode("up")

        seen = await _uplink_ids(kafka_settings, key, {"r0", "r1"}, 45)
        assert seen == {"r0", "r1"}, f"lost across the broker restart: {sorted({'r0', 'r1'} - seen)}"


@pytest.mark.parametrize(("env", "share_group", "uplink_filter"), [
    (None, None, "ebrain/+/+/+"),  # default: one replica, a plain subscription
    ("", None, "ebrain/+/+/+"),
    ("blue", "blue", "$share/blue/ebrain/+/+/+"),  # replicas split the uplink
])
def test_share_group_chooses_the_uplink_subscription(
    monkeypatch: pytest.MonkeyPatch, env: str | None, share_group: str | None, uplink_filter: str
) -> None:
    if env is None:
        monkeypatch.delenv("EBRAIN_SHARE_GROUP", raising=False)
    else:
        monkeypatch.setenv("EBRAIN_SHARE_GROUP", env)
    settings = GatewaySettings()
    assert settings.share_group == share_group
    assert mqtt_uplink_filter(settings.share_group) == uplink_filter
