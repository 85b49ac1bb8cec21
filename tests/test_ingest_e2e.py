# ruff: noqa: RUF001 - Chinese test text is written with its own punctuation
"""PII canaries sent in over MQTT (device -> Mosquitto -> gateway -> Kafka -> cloud worker -> ingest worker)
never appear in any dataset file or in any log line; the records still arrive, redacted."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cloud.app import CloudWorker
from cloud.ingest.app import IngestWorker
from cloud.ingest.settings import IngestSettings
from cloud.settings import CloudSettings
from ebrain.config import KafkaSettings, MqttSettings
from ebrain.inference.ports import Completion
from ebrain.mqtt import MqttClient
from gateway.app import Gateway
from gateway.settings import GatewaySettings
from schemas import Escalation, InferenceRequest, InferenceResult, encode, make
from schemas.topics import mqtt_uplink

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

CANARIES = {
    "email": "olivia.canary@example.com",
    "phone": "+1 646-555-0123",
    "card": "4012 8888 8888 1881",
    "name": "Olivia Pennington",
    "cn_id": "11010519491231002X",
    "cn_mobile": "18611112222",
}
GUIDE = ("Open the gateway settings, set the share group so the replicas split the uplink, and restart the "
         "replicas one at a time so the MQTT sessions resume without losing queued messages.")


class Teacher:
    """A cloud engine that repeats the prompt (so the answer carries the canaries too) and then answers."""

    model_id = "teacher"
    model_version = "1"

    async def complete(self, request: InferenceRequest) -> Completion:
        return Completion(text=f"You wrote: {request.prompt} {GUIDE}", prompt_tokens=20, completion_tokens=40,
                          mean_logprob=-0.2, finish_reason="stop", latency_ms=2.0, model_id="teacher",
                          model_version="1")

    async def aclose(self) -> None:
        return None


def _rows(root: Path, tenant: str) -> list[dict[str, object]]:
    folder = root / "data"
    return [row for p in folder.rglob(f"tenant={tenant}/*.parquet") for row in pq.read_table(p).to_pylist()]


async def test_canaries_over_mqtt_never_reach_dataset_or_logs(
    mqtt_settings: MqttSettings, kafka_settings: KafkaSettings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    uid = uuid.uuid4().hex[:8]
    tenant, device = f"t{uid}", f"d{uid}"
    c = CANARIES
    mqtt = mqtt_settings.model_copy(update={"session_expiry_s": 0})
    gateway = GatewaySettings(mqtt=mqtt, kafka=kafka_settings, client_id=f"gw-{uid}", share_group=f"gw-{uid}",
                              downlink_group=f"gw-down-{uid}")
    cloud = CloudSettings(kafka=kafka_settings, group_id=f"cloud-{uid}", session_timeout_ms=2_000,
                          heartbeat_interval_ms=500)
    ingest = IngestSettings(kafka=kafka_settings, data_dir=tmp_path, ingest_group_id=f"ingest-{uid}",
                            batch_timeout_ms=200, session_timeout_ms=2_000, heartbeat_interval_ms=500)
    local = InferenceResult(
        request_id=f"{uid}-1", route="local", model_id="edge", model_version="1", latency_ms=5.0,
        prompt=f"I'm {c['name']}, {c['email']}, {c['phone']}, card {c['card']}. How do I split the uplink?",
        text=f"Hello {c['name']}. {GUIDE}")
    request = InferenceRequest(request_id=f"{uid}-2",
                               prompt=f"我的身份证{c['cn_id']}，手机{c['cn_mobile']}，网关副本怎么分摊上行消息？")
    escalation = Escalation(request=request, reason="low_confidence", draft="设置共享订阅组。", draft_model_id="edge")

    async with Gateway(gateway) as gw, CloudWorker(cloud, engine=Teacher()) as cw, IngestWorker(ingest) as iw:
        await asyncio.wait_for(asyncio.gather(gw.ready.wait(), cw.ready.wait(), iw.ready.wait()), 60)
        async with MqttClient(mqtt, client_id=f"dev-{uid}") as client:
            for payload in (local, escalation):
                envelope = make(payload, tenant=tenant, device=device)
                await client.publish(mqtt_uplink(tenant, device, type(payload).KIND), encode(envelope))
        async with asyncio.timeout(60):
            await iw.wait_until(lambda: len(_rows(tmp_path, tenant)) >= 2)

    rows = _rows(tmp_path, tenant)  # the broker may hold other tests' messages: this tenant's are ours
    assert sorted(r["kind"] for r in rows) == ["distill", "local"]
    stored = json.dumps(rows, ensure_ascii=False, default=str)
    logged = caplog.text
    for kind, canary in c.items():
        assert canary not in stored, kind
        assert canary not in logged, kind
    distill = next(r for r in rows if r["kind"] == "distill")
    assert "<CN_RESIDENT_ID_1>" in distill["prompt"]
    assert "<CN_RESIDENT_ID_1>" in distill["answer"]  # the teacher repeated it: same placeholder
