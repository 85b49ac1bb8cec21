# ruff: noqa: RUF001 - Chinese test text is written with its own punctuation
"""The ingest worker on a real Kafka-protocol broker (Tansu via `kafka_settings`): produced envelopes become
redacted Parquet records, bad input is dead-lettered, PII canaries reach neither files nor logs, and a full
replay of the topics adds no records."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import REGISTRY

from cloud.ingest.app import IngestWorker, build_pipeline
from cloud.ingest.core.pipeline import Pipeline
from cloud.ingest.ingestor import ANSWERS, ESCALATIONS, RESULTS
from cloud.ingest.settings import IngestSettings
from ebrain.config import KafkaSettings
from ebrain.kafka import client_options, ensure_topics, producer_options
from schemas import Envelope, Escalation, InferenceRequest, InferenceResult, decode, encode, make, new_id
from schemas.topics import KAFKA_DEADLETTER

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

WAIT_S = 60.0
CANARIES = ["zoe.canary@example.net", "+1 650-555-0142", "5555 5555 5555 4444", "Zoe Hartley",
            "44030519900101123X", "13700001111"]
ANSWER = ("Give every instance the same consumer group id, then add partitions: Kafka assigns each partition to "
          "one member, so the members consume in parallel while each partition stays in order.")


def _settings(kafka: KafkaSettings, root: Path, group: str) -> IngestSettings:
    return IngestSettings(kafka=kafka, data_dir=root, ingest_group_id=group, batch_timeout_ms=200,
                          session_timeout_ms=2_000, heartbeat_interval_ms=500)


async def _until(worker: IngestWorker, condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        await worker.wait_until(condition)


def _manifest(root: Path) -> dict[str, Any]:
    path = root / "MANIFEST.json"
    return json.loads(path.read_text()) if path.exists() else {"records": 0, "counts": {"dropped": {}}}


def _envelopes(tenant: str) -> list[tuple[str, Envelope[Any]]]:
    device = "dev-7"
    local_id, esc_id = new_id(), new_id()
    local = InferenceResult(
        request_id=local_id, route="local", text=f"Hi {CANARIES[3]}, I noted your card {CANARIES[2]}. " + ANSWER,
        model_id="smollm2", model_version="1", latency_ms=12.0,
        prompt=f"I am {CANARIES[3]} ({CANARIES[0]}, {CANARIES[1]}). How do consumers share partitions?")
    prompt = f"身份证{CANARIES[4]}，手机{CANARIES[5]}。消费者组怎么并行消费？"
    request = InferenceRequest(request_id=esc_id, prompt=prompt)
    escalation = Escalation(request=request, reason="low_confidence", draft="不太确定。", draft_model_id="smollm2")
    answer = InferenceResult(request_id=esc_id, route="cloud",
                             text="同一个消费者组里的实例会分摊分区，每个分区只由一个实例消费，"
                                  "所以增加分区和实例就能并行处理，同时每个分区内部仍然保持顺序。",
                             model_id="gemma", model_version="3", latency_ms=800.0)
    unanswered = Escalation(request=InferenceRequest(request_id=new_id(), prompt="never answered"), reason="x")
    return [
        (ANSWERS, make(answer, tenant=tenant, device=device)),  # the answer may arrive before its escalation
        (RESULTS, make(local, tenant=tenant, device=device)),
        (ESCALATIONS, make(escalation, tenant=tenant, device=device)),
        (ESCALATIONS, make(unanswered, tenant=tenant, device=device)),
    ]


def _tenant_rows(root: Path, tenant: str) -> int:
    """Records of `tenant` in the manifest (the shared broker may hold other tests' messages too)."""
    return sum(f["rows"] for f in _manifest(root).get("files", []) if f["tenant"] == tenant)


def _dataset_text(root: Path) -> str:
    tables = [pq.read_table(p).to_pylist() for p in (root / "data").rglob("*.parquet")]
    return json.dumps(tables, ensure_ascii=False, default=str)


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return build_pipeline(IngestSettings())


async def _dead_letters_of(kafka: KafkaSettings, tenant: str) -> list[Envelope[Any]]:
    """The ingest component's dead letters for `tenant`, once there is one (other tests add their own)."""
    consumer = AIOKafkaConsumer(KAFKA_DEADLETTER, auto_offset_reset="earliest", **client_options(kafka))
    await consumer.start()
    found: list[Envelope[Any]] = []
    try:
        async with asyncio.timeout(WAIT_S):
            while not found:
                polled = await consumer.getmany(timeout_ms=500)
                letters = [decode(r.value) for records in polled.values() for r in records]
                found += [e for e in letters if e.data.component == "ingest" and e.tenant == tenant]
    finally:
        await consumer.stop()
    return found


async def test_envelopes_to_redacted_parquet_and_replay_adds_nothing(
    kafka_settings: KafkaSettings, pipeline: Pipeline, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # what a deployment logs (ebrain.log keeps client libraries at WARNING)
    tenant = f"t{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_settings, [RESULTS, ESCALATIONS, ANSWERS, KAFKA_DEADLETTER])
    producer = AIOKafkaProducer(**producer_options(kafka_settings))
    await producer.start()
    try:
        for topic, envelope in _envelopes(tenant):
            await producer.send_and_wait(topic, encode(envelope), key=envelope.key.encode())
        await producer.send_and_wait(RESULTS, b'{"not": "an envelope", "mail": "' + CANARIES[0].encode() + b'"}',
                                     key=f"{tenant}/dev-7".encode())
    finally:
        await producer.stop()

    async with IngestWorker(_settings(kafka_settings, tmp_path, "ingest-test-1"), pipeline=pipeline) as worker:
        await asyncio.wait_for(worker.ready.wait(), WAIT_S)
        await _until(worker, lambda: _tenant_rows(tmp_path, tenant) == 2)
        first_handled = worker.ingestor.handled if worker.ingestor else 0

    manifest = _manifest(tmp_path)
    text = _dataset_text(tmp_path)
    assert "<PERSON_1>" in text
    assert "<CN_RESIDENT_ID_1>" in text
    for canary in CANARIES:
        assert canary not in text
        assert canary not in caplog.text
    assert tenant in {f["tenant"] for f in manifest["files"]}
    assert (REGISTRY.get_sample_value("ebrain_ingest_records_total") or 0) >= 2
    assert (REGISTRY.get_sample_value("ebrain_ingest_pii_entities_total", {"entity": "CN_RESIDENT_ID"}) or 0) >= 1
    assert [e.data.reason for e in await _dead_letters_of(kafka_settings, tenant)] == ["unknown_type"]

    async with IngestWorker(_settings(kafka_settings, tmp_path, "ingest-test-2"), pipeline=pipeline) as again:
        await asyncio.wait_for(again.ready.wait(), WAIT_S)
        await _until(again, lambda: again.ingestor is not None and again.ingestor.handled >= first_handled)
    assert _manifest(tmp_path)["records"] == manifest["records"]
    assert _manifest(tmp_path)["counts"]["dropped"]["replayed"] >= 2
    assert _tenant_rows(tmp_path, tenant) == 2
    assert len(list((tmp_path / "data").rglob("*.parquet"))) == len(manifest["files"])


class _FailsOnce(Pipeline):
    """A pipeline whose first batch fails as a full disk would: the worker must re-read, not skip, it."""

    def __init__(self, inner: Pipeline) -> None:
        super().__init__(inner.scanner, inner.anonymizer, inner.policy)
        self.failures = 0

    def process(self, records: Any, index: Any, store: Any, dropped: Any = None) -> Any:
        if records and not self.failures:
            self.failures += 1
            raise OSError("No space left on device")
        return super().process(records, index, store, dropped)


async def test_a_failed_batch_is_re_read_not_lost(
    kafka_settings: KafkaSettings, pipeline: Pipeline, tmp_path: Path
) -> None:
    tenant = f"t{uuid.uuid4().hex[:8]}"
    answer, local, escalation = _envelopes(tenant)[:3]
    flaky = _FailsOnce(pipeline)
    producer = AIOKafkaProducer(**producer_options(kafka_settings))
    await producer.start()
    try:
        async with IngestWorker(_settings(kafka_settings, tmp_path, f"ingest-{tenant}"), pipeline=flaky) as worker:
            await asyncio.wait_for(worker.ready.wait(), WAIT_S)
            assert worker.ingestor is not None
            start = worker.ingestor.handled
            await producer.send_and_wait(answer[0], encode(answer[1]), key=answer[1].key.encode())
            await _until(worker, lambda: worker.ingestor is not None and worker.ingestor.handled > start)
            # The answer waits in the join window (committed); the batch pairing it fails once and is re-read.
            for topic, envelope in (local, escalation):
                await producer.send_and_wait(topic, encode(envelope), key=envelope.key.encode())
            await _until(worker, lambda: _tenant_rows(tmp_path, tenant) == 2)
    finally:
        await producer.stop()
    assert flaky.failures == 1


async def test_ingest_command_announces_ready_and_stops_on_sigterm(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    env = {**os.environ, "EBRAIN_KAFKA_BOOTSTRAP": kafka_settings.bootstrap, "EBRAIN_DATA_DIR": str(tmp_path),
           "EBRAIN_INGEST_GROUP_ID": f"ingest-cli-{uuid.uuid4().hex[:8]}", "EBRAIN_SESSION_TIMEOUT_MS": "2000",
           "EBRAIN_HEARTBEAT_INTERVAL_MS": "500"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ebrain", "data", "ingest", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), WAIT_S)
        assert json.loads(line) == {"event": "ready", "component": "ingest", "data_dir": str(tmp_path)}
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), WAIT_S) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
