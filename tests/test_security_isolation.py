"""Tenant isolation and secrets, on real brokers (what tests/test_gateway_security.py, test_cache.py and
test_ingest_kafka.py do not already cover):

- across tenants, with `ebrain gateway provision` credentials on a private Mosquitto and the gateway bridging to
  a private Kafka: a device with the same name in two tenants gets only its own tenant's replies, and cannot
  subscribe to or publish on the other tenant's topics (nor wildcard them);
- the response cache on Redis 8: many tenants storing the same prompt each get their own answer back;
- the dataset: ingest writes each tenant's records only under that tenant's partition, and one tenant's
  records never make another's identical records duplicates;
- secrets (MQTT password, Kafka SASL password) never appear in the logs of the gateway, edge, cloud and ingest
  processes, on their connection-failure paths included;
- PII canaries in a malformed message are never quoted by the refusal's detail (which gateway and cloud log).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from aiokafka import AIOKafkaProducer
from pydantic import SecretStr
from redis.asyncio import Redis

from cloud.cache import ResponseCache
from cloud.embed import MiniLM
from cloud.ingest.app import IngestWorker, build_pipeline
from cloud.ingest.ingestor import RESULTS
from cloud.ingest.settings import IngestSettings
from ebrain.config import KafkaSettings, MqttSettings
from ebrain.inference.ports import Completion
from ebrain.kafka import ensure_topics, producer_options
from ebrain.mqtt import MqttClient, MqttError, MqttMessage, MqttPublishError
from ebrain.stack import private
from gateway.app import Gateway
from gateway.core import dead_letter_record, validate_uplink
from gateway.core.provision import DeviceId
from gateway.provision import credentials_for, provision
from gateway.settings import GatewaySettings
from schemas import InferenceRequest, InferenceResult, InvalidMessage, decode, encode, make, new_id
from schemas.codec import MAX_MESSAGE_BYTES
from schemas.topics import kafka_downlink, mqtt_downlink_filter, mqtt_uplink

pytestmark = pytest.mark.integration
A, B = DeviceId("acme", "dev-1"), DeviceId("globex", "dev-1")  # the same device name in two tenants


def _uid() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple[MqttSettings, Path]]:
    """A private Mosquitto that uses the files `ebrain gateway provision` wrote for A and B."""
    inventory = tmp_path / "devices.csv"
    inventory.write_text(f"tenant,device\n{A.tenant},{A.device}\n{B.tenant},{B.device}\n")
    auth = tmp_path / "auth"
    provision(inventory, auth)
    port = private.free_port()
    proc = private.start_mosquitto(tmp_path, port, [
        "allow_anonymous false", f"password_file {auth / 'mosquitto.passwd'}", f"acl_file {auth / 'mosquitto.acl'}",
        f"user {getpass.getuser()}"])
    yield MqttSettings(port=port, session_expiry_s=0), auth
    private.stop(proc)


@pytest.fixture
def kafka(tmp_path: Path) -> Iterator[KafkaSettings]:
    port = private.free_port()
    proc = private.start_tansu(tmp_path / "kafka", port)
    yield KafkaSettings(bootstrap=f"127.0.0.1:{port}")
    private.stop(proc)


def _as(settings: MqttSettings, auth: Path, device: DeviceId | None) -> MqttSettings:
    user, password = credentials_for(auth, device)
    return settings.model_copy(update={"username": user, "password": SecretStr(password)})


async def _drain(client: MqttClient, until: str, timeout_s: float = 20) -> list[MqttMessage]:
    """Messages `client` receives up to and including the one whose payload decodes to request id `until`."""
    got: list[MqttMessage] = []
    async with asyncio.timeout(timeout_s):
        async for message in client.messages():
            got.append(message)
            if decode(message.payload).data.request_id == until:
                return got
    raise AssertionError("stream ended")


async def _queued(client: MqttClient) -> list[MqttMessage]:
    """The messages `client` has received and not handed over yet."""
    out: list[MqttMessage] = []
    if count := client.queued_incoming:
        async for message in client.messages():
            out.append(message)
            if len(out) == count:
                break
    return out


def _reply(device: DeviceId, request_id: str) -> bytes:
    result = InferenceResult(request_id=request_id, route="cloud", text=f"for {device.tenant} only", model_id="m",
                             model_version="1", latency_ms=1.0)
    return encode(make(result, tenant=device.tenant, device=device.device))


async def test_a_tenant_never_receives_another_tenants_replies_nor_reaches_its_topics(
    secured: tuple[MqttSettings, Path], kafka: KafkaSettings
) -> None:
    settings, auth = secured
    uid = _uid()
    gw = GatewaySettings(mqtt=_as(settings, auth, None), kafka=kafka, client_id=f"gw-{uid}", share_group=f"g{uid}",
                         downlink_group=f"gd-{uid}", tenants=frozenset({A.tenant, B.tenant}))
    async with Gateway(gw) as gateway, \
            MqttClient(_as(settings, auth, A), client_id=f"a-{uid}", clean_start=True) as dev_a, \
            MqttClient(_as(settings, auth, B), client_id=f"b-{uid}", clean_start=True) as dev_b:
        await asyncio.wait_for(gateway.ready.wait(), 30)
        await dev_a.subscribe(mqtt_downlink_filter(A.tenant, A.device))
        await dev_b.subscribe(mqtt_downlink_filter(B.tenant, B.device))
        # B reaching for A: Mosquitto 2.0 may grant (SUBACK 0) a subscription the ACL denies, but delivers nothing.
        for wide in (mqtt_downlink_filter(A.tenant, A.device), f"ebrain/{A.tenant}/#", "ebrain/#", "ebrain/+/+/down/+",
                     "#", "$share/x/ebrain/+/+/+"):
            with contextlib.suppress(MqttError):
                await dev_b.subscribe(wide)
        # Writing as A with B's credentials: PUBACK "not authorized" (Mosquitto 2.0 then drops the connection,
        # hence a connection of its own, as an attacker holding B's password would have).
        async with MqttClient(_as(settings, auth, B), client_id=f"rogue-{uid}", clean_start=True) as rogue:
            for topic in (mqtt_uplink(A.tenant, A.device, "request"), f"ebrain/{A.tenant}/{A.device}/down/result"):
                with pytest.raises(MqttPublishError):
                    await rogue.publish(topic, b"forged by globex")

        producer = AIOKafkaProducer(**producer_options(kafka))
        await producer.start()
        try:  # replies the cloud worker would send, interleaved, then one end marker per device
            for n in range(10):
                for device in (A, B):
                    await producer.send(kafka_downlink("result"), _reply(device, f"{device.tenant}-{n}"),
                                        key=f"{device.tenant}/{device.device}".encode())
            for device in (A, B):
                await producer.send(kafka_downlink("result"), _reply(device, f"end-{device.tenant}"),
                                    key=f"{device.tenant}/{device.device}".encode())
            await producer.flush()
        finally:
            await producer.stop()
        got_a = await _drain(dev_a, f"end-{A.tenant}")
        got_b = await _drain(dev_b, f"end-{B.tenant}")
        # Whatever else B holds by now (A's replies were all delivered to A before its end marker).
        got_b += await _queued(dev_b)
        # A's uplink is still A's alone: the gateway took nothing from B on it.
        assert gateway.uplink_stats.produced == 0
        assert gateway.uplink_stats.deadlettered == 0

    for device, got in ((A, got_a), (B, got_b)):
        envelopes = [decode(m.payload) for m in got]
        assert {(e.tenant, e.device) for e in envelopes} == {(device.tenant, device.device)}
        assert {m.topic for m in got} == {f"ebrain/{device.tenant}/{device.device}/down/result"}
        assert all(e.data.text == f"for {device.tenant} only" for e in envelopes)
        # B's granted wildcards overlap its own filter: copies of its own replies, and nothing else.
        assert {e.data.request_id for e in envelopes} == {f"{device.tenant}-{n}" for n in range(10)} | {
            f"end-{device.tenant}"}


# -- the response cache ----------------------------------------------------------------------------------------


async def test_the_same_prompt_cached_by_many_tenants_answers_each_with_its_own(redis8_url: str) -> None:
    redis = Redis.from_url(redis8_url)
    cache = ResponseCache(redis, MiniLM(), prefix=f"iso:{_uid()}")
    try:
        await cache.start()
        assert cache.semantic
        tenants = [f"t{n}" for n in range(6)]
        prompt = "How do I rotate the gateway TLS certificate?"
        for tenant in tenants[:-1]:  # the last tenant never stores anything
            answer = Completion(text=f"secret answer of {tenant}", prompt_tokens=5, completion_tokens=3,
                                mean_logprob=-0.2, finish_reason="stop", latency_ms=900.0, model_id="m",
                                model_version="v1")
            await cache.store(tenant, "v1", InferenceRequest(request_id=new_id(), prompt=prompt), answer)
        for tenant in tenants[:-1]:
            for asked in (prompt, "How can I rotate the TLS certificate of the gateway?"):
                hit = await cache.lookup(tenant, "v1", InferenceRequest(request_id=new_id(), prompt=asked))
                if hit is not None:  # exact always hits; the paraphrase may (semantic layer)
                    assert hit.completion.text == f"secret answer of {tenant}"
            assert await cache.lookup(tenant, "v1", InferenceRequest(request_id=new_id(), prompt=prompt))
        for asked in (prompt, "How can I rotate the TLS certificate of the gateway?"):
            assert await cache.lookup(tenants[-1], "v1", InferenceRequest(request_id=new_id(), prompt=asked)) is None
    finally:
        await redis.aclose()


# -- the dataset ---------------------------------------------------------------------------------------------

ANSWER = ("Give every instance the same consumer group id, then add partitions: Kafka assigns each partition to "
          "one member, so the members consume in parallel while each partition stays in order.")


async def test_ingest_keeps_each_tenants_records_in_its_own_partition(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    tenants = [f"a{_uid()}", f"b{_uid()}"]
    root = tmp_path / "dataset"
    settings = IngestSettings(kafka=kafka_settings, data_dir=root, ingest_group_id=f"iso-{_uid()}",
                              batch_timeout_ms=200, session_timeout_ms=2_000, heartbeat_interval_ms=500)
    await ensure_topics(kafka_settings, [RESULTS])
    producer = AIOKafkaProducer(**producer_options(kafka_settings))
    await producer.start()
    try:
        for n in range(3):  # the same device, request id and text in both tenants
            for tenant in tenants:
                result = InferenceResult(request_id=f"same-{n}", route="local", text=f"{ANSWER} ({n} of {tenant})",
                                         model_id="m", model_version="1", latency_ms=1.0,
                                         prompt=f"How do consumers share partitions, part {n}?")
                await producer.send(RESULTS, encode(make(result, tenant=tenant, device="dev-1")),
                                    key=f"{tenant}/dev-1".encode())
        await producer.flush()
    finally:
        await producer.stop()

    def rows(tenant: str) -> int:
        path = root / "MANIFEST.json"
        files: list[dict[str, Any]] = json.loads(path.read_text())["files"] if path.exists() else []
        return sum(f["rows"] for f in files if f["tenant"] == tenant)

    async with IngestWorker(settings, pipeline=build_pipeline(settings)) as worker:
        await asyncio.wait_for(worker.ready.wait(), 60)
        async with asyncio.timeout(60):
            await worker.wait_until(lambda: all(rows(t) == 3 for t in tenants))
    for tenant in tenants:
        files = list((root / "data").rglob(f"tenant={tenant}/*.parquet"))
        assert files
        table = [row for f in files for row in pq.read_table(f).to_pylist()]
        assert len(table) == 3
        assert all(f"of {tenant})" in json.dumps(row, default=str) for row in table)
        other = next(t for t in tenants if t != tenant)
        assert not any(f"of {other})" in json.dumps(row, default=str) for row in table)


# -- secrets never in logs -----------------------------------------------------------------------------------


def _run_briefly(argv: list[str], env: dict[str, str], run_s: float) -> tuple[int | None, str]:
    """Run `python -m ebrain ARGV` for up to `run_s`, then SIGTERM it; (exit code, stdout + stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "ebrain", *argv], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=run_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    return proc.returncode, out.decode(errors="replace")


def test_secrets_never_reach_the_logs_even_when_connections_fail(
    secured: tuple[MqttSettings, Path], kafka: KafkaSettings, tmp_path: Path
) -> None:
    settings, auth = secured
    mqtt_secret, kafka_secret = f"mqtt-pw-{_uid()}", f"sasl-pw-{_uid()}"
    gateway_user, gateway_password = credentials_for(auth, None)
    base = {"EBRAIN_MQTT__PORT": str(settings.port), "EBRAIN_KAFKA_BOOTSTRAP": kafka.bootstrap,
            "EBRAIN_KAFKA__BOOTSTRAP": kafka.bootstrap,
            # SASL against a broker without it: every Kafka connection fails, with the password configured.
            "EBRAIN_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT", "EBRAIN_KAFKA__SASL_MECHANISM": "PLAIN",
            "EBRAIN_KAFKA__SASL_USERNAME": "svc", "EBRAIN_KAFKA__SASL_PASSWORD": kafka_secret,
            "EBRAIN_STATE_DIR": str(tmp_path / "state"), "EBRAIN_DATA_DIR": str(tmp_path / "data"),
            "EBRAIN_TENANT": A.tenant, "EBRAIN_DEVICE": A.device, "EBRAIN_MODEL": "tiny",
            "EBRAIN_SESSION_TIMEOUT_MS": "2000", "EBRAIN_HEARTBEAT_INTERVAL_MS": "500",
            "EBRAIN_CONNECT_GRACE_S": "1", "EBRAIN_LOG_LEVEL": "DEBUG"}
    wrong_mqtt = {"EBRAIN_MQTT__USERNAME": A.username, "EBRAIN_MQTT__PASSWORD": mqtt_secret}
    runs = {  # name: (argv, extra env, seconds before SIGTERM, a line that shows the failure path ran)
        # MQTT refuses the wrong password: the gateway fails to start.
        "gateway-mqtt": (["gateway", "run", "--log-level", "DEBUG"], wrong_mqtt, 20.0, "refused the connection"),
        # MQTT accepts the gateway user, Kafka never does: the gateway retries with backoff until stopped.
        "gateway-kafka": (["gateway", "run", "--log-level", "DEBUG"],
                          {"EBRAIN_MQTT__USERNAME": gateway_user, "EBRAIN_MQTT__PASSWORD": gateway_password}, 6.0,
                          "kafka unavailable, retrying"),
        # The broker refuses the edge: it answers locally or spools its escalation, retrying the broker meanwhile.
        "edge": (["edge", "run", "--requests", "1", "--log-level", "DEBUG"],
                 {**wrong_mqtt, "EBRAIN_DRAIN_TIMEOUT_S": "1", "EBRAIN_REPLY_TIMEOUT_S": "3"}, 20.0,
                 "refused the connection"),
        # Kafka refuses the SASL handshake: the workers fail to start and say why.
        "cloud": (["cloud", "worker"], {}, 30.0, "cloud worker failed"),
        "ingest": (["data", "ingest"], {}, 30.0, "ingest worker failed"),
    }
    for name, (argv, extra, run_s, failure) in runs.items():
        code, output = _run_briefly(argv, {**base, **extra}, run_s)
        assert failure in output, f"{name}: the failure path did not run (exit {code}): {output[-2000:]}"
        for secret in (mqtt_secret, kafka_secret, gateway_password):
            where = output.find(secret)
            assert where < 0, f"{name} logged a secret: ...{output[max(0, where - 300):where + 300]}"


# -- PII canaries in malformed messages ------------------------------------------------------------------------
# The dead letter keeps the raw bytes (that is its job, and its topic is access-controlled); the reason's detail
# is different: the gateway and the cloud worker log it, so it must never quote the message's content.
# (tests/test_ingest_kafka.py covers canaries in valid messages through ingest: dataset and logs.)

CANARY_EMAIL, CANARY_KEY = "zoe.canary@example.net", "sk-live-CANARY0123456789abcdef"


def _request_obj() -> dict[str, object]:
    obj: dict[str, object] = json.loads(encode(make(InferenceRequest(request_id="r1", prompt="hi"), tenant="acme",
                                                    device="dev-1")))
    return obj


def _with_data(**fields: object) -> bytes:
    obj = _request_obj()
    return json.dumps({**obj, "data": {**obj["data"], **fields}}).encode()  # type: ignore[dict-item]


@pytest.mark.parametrize("raw", [
    pytest.param(json.dumps({**_request_obj(), "type": f"mail {CANARY_EMAIL} key {CANARY_KEY}"}).encode(),
                 id="unknown-type"),
    pytest.param(_with_data(**{CANARY_KEY: CANARY_EMAIL}), id="unknown-field-name"),
    pytest.param(_with_data(prompt=7, system=CANARY_EMAIL), id="wrong-type-beside-pii"),
    pytest.param(_with_data(request_id=f"{CANARY_EMAIL} {CANARY_KEY}"), id="pii-in-a-bad-id"),
    pytest.param(_with_data(max_tokens=CANARY_EMAIL), id="pii-as-a-number"),
    pytest.param(json.dumps({**_request_obj(), "schema_version": CANARY_EMAIL}).encode(), id="pii-as-version"),
    pytest.param(json.dumps({**_request_obj(), "tenant": CANARY_EMAIL}).encode(), id="pii-as-tenant"),
    pytest.param(f'{{"prompt": "{CANARY_EMAIL}", "key": "{CANARY_KEY}"'.encode(), id="truncated"),
    pytest.param(f'{{"prompt": "{CANARY_EMAIL}" "key": "{CANARY_KEY}"}}'.encode(), id="bad-json"),
    pytest.param(f'["{CANARY_EMAIL}"]'.encode(), id="not-an-object"),
    pytest.param(CANARY_EMAIL.encode() + b"\xff" + CANARY_KEY.encode(), id="invalid-utf8"),
])
def test_a_refusal_never_quotes_the_message_content(raw: bytes) -> None:
    with pytest.raises(InvalidMessage) as refused:
        validate_uplink(mqtt_uplink("acme", "dev-1", "request"), raw, max_bytes=MAX_MESSAGE_BYTES)
    detail = dead_letter_record("ebrain/acme/dev-1/request", raw, refused.value)
    assert CANARY_EMAIL not in refused.value.detail, refused.value.detail
    assert CANARY_KEY not in refused.value.detail, refused.value.detail
    assert CANARY_EMAIL not in decode(detail.value).data.detail
