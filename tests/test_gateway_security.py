"""Limits and security on real brokers: provisioned passwords + ACLs on a private Mosquitto, TLS, rate-limit
replies, unknown tenants, and that the Kafka security options reach the clients."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import getpass
import json
import ssl
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import SecretStr

from ebrain.config import KafkaSettings, MqttSettings
from ebrain.kafka import client_options, producer_options
from ebrain.mqtt import MqttClient, MqttConnectError, MqttError, MqttMessage, MqttPublishError
from ebrain.stack import private
from gateway import metrics
from gateway.app import Gateway
from gateway.core.provision import DeviceId
from gateway.provision import credentials_for, provision
from gateway.settings import GatewaySettings
from schemas import InferenceRequest, Telemetry, decode, encode, make
from schemas.topics import KAFKA_DEADLETTER, mqtt_downlink, mqtt_downlink_filter, mqtt_uplink

pytestmark = pytest.mark.integration
DEV1, DEV2 = DeviceId("acme", "dev-1"), DeviceId("acme", "dev-2")


def _uid() -> str:
    return uuid.uuid4().hex[:8]


def _request(tenant: str, device: str, n: int) -> bytes:
    return encode(make(InferenceRequest(request_id=f"r{n}", prompt="hi"), tenant=tenant, device=device))


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple[MqttSettings, Path]]:
    """A private Mosquitto that uses the files `ebrain gateway provision` wrote for two devices."""
    inventory = tmp_path / "devices.csv"
    inventory.write_text("tenant,device\nacme,dev-1\nacme,dev-2\n")
    auth = tmp_path / "auth"
    provision(inventory, auth)
    port = private.free_port()
    proc = private.start_mosquitto(tmp_path, port, [
        "allow_anonymous false", f"password_file {auth / 'mosquitto.passwd'}", f"acl_file {auth / 'mosquitto.acl'}",
        f"user {getpass.getuser()}",  # the secret files are 0600: Mosquitto must not drop to another user
    ])
    yield MqttSettings(port=port, session_expiry_s=0), auth
    private.stop(proc)


def _as(settings: MqttSettings, auth: Path, device: DeviceId | None) -> MqttSettings:
    user, password = credentials_for(auth, device)
    return settings.model_copy(update={"username": user, "password": SecretStr(password)})


async def _next(client: MqttClient, timeout: float = 10) -> MqttMessage:  # noqa: ASYNC109
    async def first() -> MqttMessage:
        async for message in client.messages():
            return message
        raise AssertionError("stream ended")

    return await asyncio.wait_for(first(), timeout)


async def test_provisioned_device_is_confined_to_its_own_prefix(secured: tuple[MqttSettings, Path]) -> None:
    settings, auth = secured
    async with MqttClient(_as(settings, auth, None), client_id="gw", clean_start=True) as gw, \
            MqttClient(_as(settings, auth, DEV1), client_id="d1", clean_start=True) as dev1, \
            MqttClient(_as(settings, auth, DEV2), client_id="d2", clean_start=True) as dev2:
        await gw.subscribe("$share/g/ebrain/+/+/+")  # the gateway user reads every uplink
        await dev1.publish(mqtt_uplink(DEV1.tenant, DEV1.device, "request"), b"mine")
        assert (await _next(gw)).payload == b"mine"

        # Reading: Mosquitto 2.0 may grant (SUBACK 0) a subscription the ACL denies, but delivers nothing on it.
        with contextlib.suppress(MqttError):
            await dev1.subscribe(mqtt_downlink_filter(DEV2.tenant, DEV2.device))
        with contextlib.suppress(MqttError):
            await dev1.subscribe("ebrain/#")
        await dev1.subscribe(mqtt_downlink_filter(DEV1.tenant, DEV1.device))
        await gw.publish(mqtt_downlink(DEV2.tenant, DEV2.device, "result"), b"for dev-2")
        with pytest.raises(MqttPublishError):  # nor can the gateway user forge a device's uplink
            await gw.publish(mqtt_uplink(DEV2.tenant, DEV2.device, "request"), b"forged by the gateway user")
        await gw.publish(mqtt_downlink(DEV1.tenant, DEV1.device, "result"), b"for dev-1")
        assert (await _next(dev1)).payload == b"for dev-1"  # the earlier ones never reached dev-1

        # Writing: MQTT v5 PUBACK "not authorized", and the gateway never sees the forged message.
        with pytest.raises(MqttPublishError):
            await dev2.publish(mqtt_uplink(DEV1.tenant, DEV1.device, "request"), b"forged")
        with pytest.raises(MqttPublishError):
            await dev2.publish(mqtt_downlink(DEV1.tenant, DEV1.device, "result"), b"spoofed reply")
        await dev2.publish(mqtt_uplink(DEV2.tenant, DEV2.device, "request"), b"fence")
        assert (await _next(gw)).payload == b"fence"
        # Anything else dev-1 got came through its overlapping `ebrain/#` and is its own downlink again.
        extra = [(await _next(dev1)) for _ in range(dev1.queued_incoming)]
        assert {m.topic for m in extra} <= {mqtt_downlink(DEV1.tenant, DEV1.device, "result")}


async def test_wrong_password_and_anonymous_clients_are_refused(secured: tuple[MqttSettings, Path]) -> None:
    settings, auth = secured
    wrong = _as(settings, auth, DEV1).model_copy(update={"password": SecretStr("not-it")})
    for refused in (wrong, settings):
        with pytest.raises(MqttConnectError):
            async with MqttClient(refused, client_id=f"x{_uid()}", connect_timeout_s=5):
                pass


async def test_gateway_bridges_with_its_provisioned_user(
    secured: tuple[MqttSettings, Path], kafka_settings: KafkaSettings
) -> None:
    settings, auth = secured
    uid = _uid()
    gw = GatewaySettings(mqtt=_as(settings, auth, None), kafka=kafka_settings, client_id=f"gw-{uid}",
                         share_group=f"g{uid}", downlink_group=f"gd-{uid}", inventory_file=None)
    async with Gateway(gw) as gateway, MqttClient(_as(settings, auth, DEV2), client_id="d2", clean_start=True) as dev:
        await asyncio.wait_for(gateway.ready.wait(), 30)
        await dev.publish(mqtt_uplink(DEV2.tenant, DEV2.device, "request"), _request(DEV2.tenant, DEV2.device, 1))
        await _until_acked(gateway, 1)
    assert gateway.uplink_stats.produced == 1


async def _until_acked(gateway: Gateway, n: int, deadline_s: float = 20) -> None:
    async with asyncio.timeout(deadline_s):
        while gateway.uplink_stats.acked < n:  # noqa: ASYNC110 - polling a counter, with a deadline
            await asyncio.sleep(0.05)


# -- TLS -------------------------------------------------------------------------------------------------------


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[MqttSettings]:
    """A private Mosquitto with a TLS listener and a throw-away CA (cert for IP 127.0.0.1)."""
    ca_key, ca, key, csr, cert = (tmp_path / n for n in ("ca.key", "ca.pem", "srv.key", "srv.csr", "srv.pem"))
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
             "-days", "1", "-subj", "/CN=ebrain-test-ca")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    ext = tmp_path / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
             "-out", str(cert), "-days", "1", "-extfile", str(ext))
    port = private.free_port()
    proc = private.start_mosquitto(tmp_path, port, [
        "allow_anonymous true", f"cafile {ca}", f"certfile {cert}", f"keyfile {key}", f"user {getpass.getuser()}",
    ])
    yield MqttSettings(port=port, tls=True, ca_file=str(ca), session_expiry_s=0)
    private.stop(proc)


async def test_mqtt_tls_verifies_the_broker_with_the_configured_ca(tls_broker: MqttSettings) -> None:
    async with MqttClient(tls_broker, client_id=f"tls-{_uid()}", clean_start=True) as client:
        await client.subscribe("t/tls")
        await client.publish("t/tls", b"over tls")
        assert (await _next(client)).payload == b"over tls"
    untrusted = tls_broker.model_copy(update={"ca_file": None})  # system CAs do not know our test CA
    with pytest.raises(MqttConnectError):
        async with MqttClient(untrusted, client_id=f"tls-{_uid()}", connect_timeout_s=5):
            pass


async def test_kafka_sasl_ssl_options_reach_the_clients() -> None:
    settings = KafkaSettings(bootstrap="kafka:9093", security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                             sasl_username="gw", sasl_password=SecretStr("s3cret"), enable_idempotence=True,
                             linger_ms=20, max_batch_size=256 * 1024, compression="gzip")
    opts = producer_options(settings)
    assert isinstance(opts["ssl_context"], ssl.SSLContext)
    assert (opts["security_protocol"], opts["sasl_mechanism"], opts["sasl_plain_username"]) == (
        "SASL_SSL", "SCRAM-SHA-512", "gw")
    assert opts["sasl_plain_password"] == "s3cret"
    assert (opts["acks"], opts["enable_idempotence"], opts["linger_ms"]) == ("all", True, 20)
    assert (opts["max_batch_size"], opts["compression_type"]) == (256 * 1024, "gzip")
    producer = AIOKafkaProducer(**opts)  # aiokafka validates the combination without connecting
    assert producer.client._security_protocol == "SASL_SSL"
    assert producer.client._sasl_mechanism == "SCRAM-SHA-512"
    assert "s3cret" not in repr(settings)


# -- rate limits and the tenant registry --------------------------------------------------------------------


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MqttSettings]:
    """A private Mosquitto: on the shared :1883 the gateway would also see other test runs' uplinks."""
    port = private.free_port()
    proc = private.start_mosquitto(tmp_path, port)
    yield MqttSettings(port=port, session_expiry_s=0)
    private.stop(proc)


@pytest.fixture
async def device(broker: MqttSettings) -> AsyncIterator[MqttClient]:
    async with MqttClient(broker, client_id=f"dev-{_uid()}", clean_start=True) as client:
        yield client


def _gateway(mqtt: MqttSettings, kafka: KafkaSettings, **over: object) -> GatewaySettings:
    uid = _uid()
    return GatewaySettings(mqtt=mqtt.model_copy(update={"session_expiry_s": 0}), kafka=kafka, client_id=f"gw-{uid}",
                           share_group=f"g{uid}", downlink_group=f"gd-{uid}", **over)  # type: ignore[arg-type]


async def _kafka_values(kafka: KafkaSettings, topic: str, key: bytes, count: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, **client_options(kafka), group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    found: list[bytes] = []
    try:
        async with asyncio.timeout(20):
            while len(found) < count:
                batches = await consumer.getmany(timeout_ms=200)
                found += [r.value for recs in batches.values() for r in recs if r.key == key]
    finally:
        await consumer.stop()
    return found


def _count(scope: str, kind: str, action: str) -> float:
    return float(metrics.RATE_LIMITED.labels(scope=scope, kind=kind, action=action)._value.get())


async def test_over_the_limit_the_device_gets_rejected_replies_and_nothing_is_silent(
    broker: MqttSettings, kafka_settings: KafkaSettings, device: MqttClient
) -> None:
    tenant, dev = f"t{_uid()}", "d1"
    await device.subscribe(mqtt_downlink_filter(tenant, dev))
    replied, dropped = _count("device", "request", "replied"), _count("device", "telemetry", "dropped")
    settings = _gateway(broker, kafka_settings, device_rate_per_s=0.001, device_burst=2)
    async with Gateway(settings) as gateway:
        await asyncio.wait_for(gateway.ready.wait(), 30)
        sent_span = "00f067aa0ba902b7"
        for n in range(5):
            raw = _request(tenant, dev, n)
            parent = f"00-{decode(raw).trace_id}-{sent_span}-01"
            await device.publish(mqtt_uplink(tenant, dev, "request"), raw, user_properties=[("traceparent", parent)])
        telemetry = make(Telemetry(model_id="m", model_version="1", uptime_s=1.0), tenant=tenant, device=dev)
        await device.publish(mqtt_uplink(tenant, dev, "telemetry"), encode(telemetry))
        messages = [await _next(device) for _ in range(3)]
        replies = [decode(m.payload).data for m in messages]
        # Each refusal continues the device's trace as a new span (one message, one trace, even when refused).
        for m in messages:
            header = dict(m.user_properties)["traceparent"]
            assert header.split("-")[1] == decode(m.payload).trace_id
            assert header.split("-")[2] != sent_span
        await _until_acked(gateway, 6)
        produced = await _kafka_values(kafka_settings, "ebrain.request", f"{tenant}/{dev}".encode(), 2)
    assert [decode(v).data.request_id for v in produced] == ["r0", "r1"]
    assert [(r.request_id, r.status, r.reason) for r in replies] == [
        (f"r{n}", "rejected", "rate_limited:device") for n in (2, 3, 4)]
    assert gateway.uplink_stats.rate_limited == 4
    assert _count("device", "request", "replied") - replied == 3
    assert _count("device", "telemetry", "dropped") - dropped == 1


async def test_unknown_tenant_is_dead_lettered(
    broker: MqttSettings, kafka_settings: KafkaSettings, device: MqttClient, tmp_path: Path
) -> None:
    known, stranger = f"k{_uid()}", f"s{_uid()}"
    inventory = tmp_path / "devices.csv"
    inventory.write_text(f"{known},d1\n")
    async with Gateway(_gateway(broker, kafka_settings, inventory_file=inventory)) as gateway:
        assert gateway.settings.tenants == frozenset({known})
        await asyncio.wait_for(gateway.ready.wait(), 30)
        await device.publish(mqtt_uplink(stranger, "d1", "request"), _request(stranger, "d1", 0))
        await device.publish(mqtt_uplink(known, "d1", "request"), _request(known, "d1", 1))
        dead = await _kafka_values(kafka_settings, KAFKA_DEADLETTER, f"{stranger}/d1".encode(), 1)
        await _kafka_values(kafka_settings, "ebrain.request", f"{known}/d1".encode(), 1)
    letter = decode(dead[0]).data
    assert (letter.reason, letter.source_topic) == ("unknown_tenant", mqtt_uplink(stranger, "d1", "request"))
    assert json.loads(base64.b64decode(letter.raw_b64))["tenant"] == stranger
