"""Integration tests of the cloud worker on a real Kafka-protocol broker (Tansu via `kafka_settings`).

One worker runs for the module over a scripted engine whose behaviour each test picks through the prompt,
so tests do not pay a consumer-group rebalance each; the last test runs the real LlamaCppEngine.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY

from cloud.app import CloudWorker
from cloud.settings import CloudSettings
from ebrain.config import KafkaSettings
from ebrain.inference.ports import Completion, EngineOverloaded, EngineUnavailable
from schemas import (
    DeadLetter,
    Envelope,
    Escalation,
    InferenceRequest,
    encode,
    make,
    new_id,
)
from schemas.topics import KAFKA_DEADLETTER, kafka_uplink
from tests.kafka_tail import RESULTS, WAIT_S, Tail, producer_fixture, results_fixture  # noqa: F401 - fixtures
from tests.kafka_tail import for_request as _for_request

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

TENANT = "acme"


class ScriptedEngine:
    """Echoes the prompt. Prompts starting `overload2:` fail twice with EngineOverloaded first (per
    request id); `unavailable:` always raises EngineUnavailable; `crash:` always raises RuntimeError."""

    model_id = "echo"
    model_version = "1"

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    async def complete(self, request: InferenceRequest) -> Completion:
        n = self.calls[request.request_id] = self.calls.get(request.request_id, 0) + 1
        if request.prompt.startswith("overload2:") and n <= 2:
            raise EngineOverloaded("queue full")
        if request.prompt.startswith("unavailable:"):
            raise EngineUnavailable("model reloading")
        if request.prompt.startswith("crash:"):
            raise RuntimeError("kaboom")
        words = request.prompt.split()
        return Completion(text=f"echo: {request.prompt}", prompt_tokens=len(words), completion_tokens=len(words),
                          mean_logprob=-0.05, finish_reason="stop", latency_ms=1.0, model_id=self.model_id,
                          model_version=self.model_version)

    async def aclose(self) -> None:
        return None


def _escalation(prompt: str, *, device: str = "dev-1", deadline_ms: int | None = None) -> Envelope[Escalation]:
    request = InferenceRequest(request_id=new_id(), prompt=prompt, deadline_ms=deadline_ms)
    esc = Escalation(request=request, reason="low confidence", draft="a guess", draft_model_id="tiny")
    return make(esc, tenant=TENANT, device=device)


def _metric(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


async def _send(producer: AIOKafkaProducer, topic: str, value: bytes, key: str) -> None:
    await producer.send_and_wait(topic, value, key=key.encode())


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def engine() -> ScriptedEngine:
    return ScriptedEngine()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def worker(kafka_settings: KafkaSettings, engine: ScriptedEngine) -> AsyncIterator[CloudWorker]:
    settings = CloudSettings(kafka=kafka_settings, dedup_size=1000, retry_base_ms=10, retry_cap_ms=50,
                             session_timeout_ms=2_000, heartbeat_interval_ms=500)
    async with CloudWorker(settings, engine=engine) as running:
        await asyncio.wait_for(running.ready.wait(), WAIT_S)
        yield running


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def deadletters(kafka_settings: KafkaSettings) -> AsyncIterator[Tail]:
    async with Tail(kafka_settings, KAFKA_DEADLETTER) as tail:
        yield tail


async def test_escalation_is_answered_on_the_downlink(
    worker: CloudWorker, producer: AIOKafkaProducer, results: Tail
) -> None:
    env = _escalation("hello cloud")
    started = time.monotonic()
    await _send(producer, kafka_uplink("escalation"), encode(env), env.key)
    [(key, reply)] = await results.wait_for(_for_request(env.data.request.request_id))
    assert key == b"acme/dev-1"
    assert (reply.tenant, reply.device, reply.trace_id) == (env.tenant, env.device, env.trace_id)
    assert reply.id != env.id
    assert reply.data.route == "cloud"
    assert reply.data.status == "ok"
    assert reply.data.text == "echo: hello cloud"
    assert reply.data.reason == "escalated: low confidence"
    assert (reply.data.model_id, reply.data.model_version) == ("echo", "1")
    assert time.monotonic() - started < WAIT_S


async def test_direct_request_is_answered(worker: CloudWorker, producer: AIOKafkaProducer, results: Tail) -> None:
    env = make(InferenceRequest(request_id=new_id(), prompt="direct"), tenant=TENANT, device="dev-2")
    await _send(producer, kafka_uplink("request"), encode(env), env.key)
    [(key, reply)] = await results.wait_for(_for_request(env.data.request_id))
    assert key == b"acme/dev-2"
    assert reply.data.reason == "requested"
    assert reply.trace_id == env.trace_id


async def test_duplicate_is_not_answered_twice(
    worker: CloudWorker, producer: AIOKafkaProducer, results: Tail
) -> None:
    dup_before = _metric("ebrain_cloud_duplicates_total")
    env = _escalation("say it once", device="dev-dup")
    marker = _escalation("after the duplicate", device="dev-dup")
    for message in (env, env, marker):  # same key: one partition, processed in this order
        await _send(producer, kafka_uplink("escalation"), encode(message), message.key)
    await results.wait_for(_for_request(marker.data.request.request_id))
    replies = [e for _, e in results.envelopes() if _for_request(env.data.request.request_id)(e)]
    assert len(replies) == 1
    assert _metric("ebrain_cloud_duplicates_total") == dup_before + 1


async def test_malformed_bytes_are_dead_lettered_and_work_goes_on(
    worker: CloudWorker, producer: AIOKafkaProducer, results: Tail, deadletters: Tail
) -> None:
    before = _metric("ebrain_cloud_deadletters_total", {"reason": "invalid_json"})
    garbage = b'{"not": json ' + new_id().encode()
    good = _escalation("still here", device="dev-bad")
    await _send(producer, kafka_uplink("escalation"), garbage, "acme/dev-bad")
    await _send(producer, kafka_uplink("escalation"), encode(good), good.key)

    def is_ours(env: Envelope[Any]) -> bool:
        return isinstance(env.data, DeadLetter) and base64.b64decode(env.data.raw_b64) == garbage

    [(key, letter)] = await deadletters.wait_for(is_ours)
    assert letter.data.reason == "invalid_json"
    assert letter.data.source_topic == "ebrain.escalation"
    assert letter.data.component == "cloud"
    assert (letter.tenant, letter.device, key) == ("acme", "dev-bad", b"acme/dev-bad")
    [(_, reply)] = await results.wait_for(_for_request(good.data.request.request_id))
    assert reply.data.status == "ok"
    assert _metric("ebrain_cloud_deadletters_total", {"reason": "invalid_json"}) == before + 1


async def test_oversized_message_is_dead_lettered_within_the_size_cap(
    worker: CloudWorker, producer: AIOKafkaProducer, deadletters: Tail
) -> None:
    marker = new_id().encode()
    big = marker + b" " * (300 * 1024)
    await _send(producer, kafka_uplink("request"), big, "acme/dev-big")
    [(_, letter)] = await deadletters.wait_for(
        lambda e: isinstance(e.data, DeadLetter) and base64.b64decode(e.data.raw_b64).startswith(marker))
    assert letter.data.reason == "oversize"
    assert letter.data.raw_size == len(big)
    assert len(base64.b64decode(letter.data.raw_b64)) < len(big)
    assert f"raw {len(big)} bytes" in letter.data.detail


async def test_wrong_payload_on_a_topic_is_dead_lettered(
    worker: CloudWorker, producer: AIOKafkaProducer, deadletters: Tail
) -> None:
    env = make(InferenceRequest(request_id=new_id(), prompt="wrong topic"), tenant=TENANT, device="dev-3")
    raw = encode(env)
    await _send(producer, kafka_uplink("escalation"), raw, env.key)
    [(_, letter)] = await deadletters.wait_for(
        lambda e: isinstance(e.data, DeadLetter) and base64.b64decode(e.data.raw_b64) == raw)
    assert letter.data.reason == "topic_mismatch"


async def test_overloaded_engine_is_retried(
    worker: CloudWorker, engine: ScriptedEngine, producer: AIOKafkaProducer, results: Tail
) -> None:
    env = _escalation("overload2: then fine")
    await _send(producer, kafka_uplink("escalation"), encode(env), env.key)
    [(_, reply)] = await results.wait_for(_for_request(env.data.request.request_id))
    assert reply.data.status == "ok"
    assert engine.calls[env.data.request.request_id] == 3


# Deadlines with room: 300 ms was at the mercy of the backlog other modules leave on the shared topics and of
# a loaded machine (the message must reach the engine before its deadline for the reason to be the engine's).
@pytest.mark.parametrize(("prompt", "reason", "deadline_ms"), [
    ("unavailable: forever", "EngineUnavailable: model reloading (deadline reached after", 3_000),
    ("crash: now", "engine error: RuntimeError: kaboom", 10_000),
])
async def test_failing_engine_gives_a_failed_result(
    worker: CloudWorker, producer: AIOKafkaProducer, results: Tail, prompt: str, reason: str, deadline_ms: int
) -> None:
    env = _escalation(prompt, deadline_ms=deadline_ms)
    after = _escalation("next one", deadline_ms=5_000)
    for message in (env, after):
        await _send(producer, kafka_uplink("escalation"), encode(message), message.key)
    [(_, reply)] = await results.wait_for(_for_request(env.data.request.request_id))
    assert reply.data.status == "failed"
    assert reply.data.route == "cloud"
    assert reply.data.reason.startswith(reason)
    assert reply.trace_id == env.trace_id
    [(_, next_reply)] = await results.wait_for(_for_request(after.data.request.request_id))
    assert next_reply.data.status == "ok"
