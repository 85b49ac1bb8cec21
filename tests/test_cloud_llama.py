"""The cloud worker end to end on the real LlamaCppEngine (tiny random-weight GGUF) and a real broker.

Also checks the commit semantics: a restarted worker resumes after the last answered message, so nothing
is answered twice (its dedup set starts empty) and nothing sent while it was down is lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from cloud.app import CloudWorker
from cloud.settings import CloudSettings
from ebrain.config import KafkaSettings
from schemas import encode
from schemas.topics import kafka_uplink
from tests.kafka_tail import RESULTS, WAIT_S, Tail
from tests.kafka_tail import for_request as _for_request
from tests.kafka_tail import started_producer as _producer
from tests.test_cloud_worker import _escalation

pytest.importorskip("llama_cpp")
pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def results(kafka_settings: KafkaSettings) -> AsyncIterator[Tail]:
    async with Tail(kafka_settings, RESULTS) as tail:
        yield tail


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def producer(kafka_settings: KafkaSettings) -> AsyncIterator[AIOKafkaProducer]:
    async with _producer(kafka_settings) as running:
        yield running


def _settings(kafka: KafkaSettings, state_dir: Path) -> CloudSettings:
    return CloudSettings(kafka=kafka, model="tiny", state_dir=state_dir, n_threads=2, n_ctx=512,
                         model_version="test", session_timeout_ms=2_000, heartbeat_interval_ms=500)


async def test_llama_engine_answers_and_restart_resumes(
    kafka_settings: KafkaSettings, tmp_path: Path, producer: AIOKafkaProducer, results: Tail
) -> None:
    settings = _settings(kafka_settings, tmp_path)
    first = _escalation("Tell me about Kafka.", device="dev-llama")
    async with CloudWorker(settings) as worker:
        await asyncio.wait_for(worker.ready.wait(), WAIT_S)
        assert worker.engine is not None
        await producer.send_and_wait(kafka_uplink("escalation"), encode(first), key=first.key.encode())
        [(key, reply)] = await results.wait_for(_for_request(first.data.request.request_id))
    assert worker.engine is None  # built from settings, so closed by the worker
    assert key == b"acme/dev-llama"
    assert reply.trace_id == first.trace_id
    assert reply.data.route == "cloud"
    assert reply.data.status == "ok", reply.data.reason
    assert reply.data.model_id == "tiny-llama"
    assert reply.data.model_version == "test"
    assert reply.data.completion_tokens > 0
    assert reply.data.confidence is not None

    # Sent while no worker runs: the next one must pick it up, and must not answer `first` again.
    second = _escalation("And about MQTT?", device="dev-llama")
    await producer.send_and_wait(kafka_uplink("escalation"), encode(second), key=second.key.encode())
    async with CloudWorker(settings) as worker:
        await results.wait_for(_for_request(second.data.request.request_id))
    answered_first = [e for _, e in results.envelopes() if _for_request(first.data.request.request_id)(e)]
    assert len(answered_first) == 1
