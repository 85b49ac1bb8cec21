"""End to end on the real brokers: device -> MQTT -> gateway -> Kafka -> cloud worker -> Kafka -> gateway -> MQTT
-> device, with real llama.cpp (the tiny model) on both ends. Once in one process, once as the demo's processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from cloud.app import CloudWorker
from ebrain.config import KafkaSettings, MqttSettings
from ebrain.kafka import client_options
from ebrain.mqtt import MqttClient
from edge.agent import EdgeAgent
from edge.uplink import MqttUplink
from gateway.app import Gateway
from schemas import InferenceRequest, InferenceResult, decode
from schemas.topics import kafka_uplink
from tests.inprocess import in_process

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _kafka_records(kafka: KafkaSettings, topic: str, want: int, deadline_s: float) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, auto_offset_reset="earliest", enable_auto_commit=False,
                                **client_options(kafka))
    await consumer.start()
    found: list[bytes] = []
    try:
        async with asyncio.timeout(deadline_s):
            while len(found) < want:
                batch = await consumer.getmany(timeout_ms=200)
                found.extend(r.value for records in batch.values() for r in records)
    finally:
        await consumer.stop()
    return found


async def test_device_to_cloud_and_back_in_one_process(
    mqtt_settings: MqttSettings, kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    uid = uuid.uuid4().hex[:8]
    tenant, device = f"t{uid}", f"d{uid}"
    setup = await in_process(mqtt_settings, kafka_settings, tmp_path, uid)
    model, mqtt, policy, engine = setup.model, setup.mqtt, setup.policy, setup.engine
    async with Gateway(setup.gateway) as gateway, CloudWorker(setup.cloud) as worker, engine:
        await asyncio.wait_for(asyncio.gather(gateway.ready.wait(), worker.ready.wait()), 60)
        async with MqttClient(mqtt, client_id=f"dev-{uid}") as client:
            agent = EdgeAgent(tenant=tenant, device=device, engine=engine, mqtt=client, uplink=MqttUplink(client),
                              policy=policy, reply_timeout_s=60, telemetry_interval_s=3600)
            async with agent:
                local = await agent.handle(InferenceRequest(request_id=f"{uid}-1", prompt="hi", max_tokens=8))
                cloud = await agent.handle(
                    InferenceRequest(request_id=f"{uid}-2", prompt="plan", tags=("complex",), max_tokens=8))
    assert local.result.route == "local"
    assert local.result.status == "ok"
    assert cloud.result.route == "cloud"
    assert cloud.result.status == "ok", cloud.result.reason
    assert cloud.result.model_id == model.stem  # the cloud worker's model answered
    assert cloud.result.reason.startswith("escalated")
    # The local inference reached Kafka too, keyed by device, carrying the device's ids.
    mine = [decode(raw) for raw in await _kafka_records(kafka_settings, kafka_uplink("result"), 1, 30)]
    results = [e for e in mine if e.device == device]
    assert results
    assert isinstance(results[0].data, InferenceResult)
    assert results[0].data.request_id == f"{uid}-1"


def test_demo_runs_the_fleet_as_processes_and_loses_nothing(tmp_path: Path) -> None:
    """`ebrain demo --scenario gateway-kill --json` on the tiny model: its own stack (free ports), gateway, worker,
    2 devices; the gateway is killed with SIGKILL mid-run and restarted."""
    uid = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "EBRAIN_STACK_KAFKA_PORT": str(_free_port()),
        "EBRAIN_STACK_REDIS_PORT": str(_free_port()),
        "EBRAIN_SHARE_GROUP": f"demo-{uid}",
        "EBRAIN_CLIENT_ID": f"demo-gw-{uid}",
        # The gateway's session must outlive its kill (the broker queues for it meanwhile), and not the test by much.
        "EBRAIN_MQTT__SESSION_EXPIRY_S": "120",
        "EBRAIN_TENANT": f"t{uid}",
        # Random weights: let confidence pass, so both routes are exercised (tags send the rest to the cloud).
        "EBRAIN_MIN_CONFIDENCE": "0",
        "EBRAIN_ESCALATE_ON_TRUNCATION": "false",
        # Tansu group joins are slow: short sessions for the cloud worker's and the ingest worker's groups.
        "EBRAIN_SESSION_TIMEOUT_MS": "2000",
        "EBRAIN_HEARTBEAT_INTERVAL_MS": "500",
    }
    env.pop("EBRAIN_KAFKA_BOOTSTRAP", None)
    env.pop("EBRAIN_REDIS_URL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "ebrain", "demo", "--model", "tiny", "--devices", "2", "--requests", "3",
         "--scenario", "gateway-kill", "--json", "--state-dir", str(tmp_path / "state")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["sent"] == 6
    assert summary["lost"] == 0
    assert (summary["scenario"], summary["restarted"]) == ("gateway-kill", ["gateway"])
    assert summary["failed"] == 0, summary
    assert summary["answered_local"] >= 1
    assert summary["answered_cloud"] >= 1
    assert summary["answered_local"] + summary["answered_cloud"] == 6
    assert {"answered_cache", "deferred", "p50_ms", "p95_ms"} <= set(summary)
    # Counted from the gateway's and the worker's /metrics (not 0 for sure: the machine's Mosquitto is shared, and
    # the demo's gateway bridges whatever other tests publish while it runs).
    assert isinstance(summary["deadletters"], int)
    # The report: one HTML file under the state directory, its plots inline.
    report = Path(summary["report"])
    assert report.parent == tmp_path / "state" / "reports"
    html = report.read_text()
    assert html.count("<svg") >= 5, html[:2000]
    for title in ("latency, local", "latency, cloud", "escalation rate over time", "cache hit rate", "throughput"):
        assert title in html
    # Ingestion read everything the fleet put in Kafka (each request leaves at least one record there).
    assert summary["ingest_lag"] == 0
    assert summary["ingest_consumed"] >= 6
    assert summary["dataset_records"] == summary["dataset_records_written"] >= 0
    # The demo started its own Kafka and Redis, and stopped them again.
    assert (tmp_path / "state" / "kafka.log").exists()
    pids = list((tmp_path / "state").rglob("*.pid"))
    assert not pids, pids
