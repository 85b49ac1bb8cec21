"""The cloud worker in router mode end to end on Kafka (Tansu), Redis 8 and a real llama.cpp server.

Primary: a stub OpenAI server the tests switch (ok, 503, hang). CPU replica: the real llama.cpp server on
the tiny model, behind a Gate the tests can close to simulate its saturation. One worker for the module.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from cloud.app import CloudWorker
from cloud.backends import OpenAIBackend
from cloud.core import RecentIds
from cloud.idempotency import ReplyStore
from cloud.settings import CloudSettings, RateLimitSettings
from cloud.testing import Gate, StubServer, llama_server
from cloud.worker import RETRY_TOPIC, UplinkHandler
from ebrain.config import KafkaSettings
from ebrain.models import resolve_model
from schemas import Envelope, InferenceRequest, InferenceResult, encode, make, new_id
from schemas.topics import kafka_uplink
from tests.kafka_tail import WAIT_S, Tail, producer_fixture, results_fixture  # noqa: F401 - fixtures
from tests.kafka_tail import for_request as _for_request
from tests.test_cloud_worker import _escalation

pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] deps not installed")
pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

RESULTS = "ebrain.down.result"
DEVICE_LIMIT = 4


@pytest.fixture(scope="module")
def llama_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with llama_server(resolve_model("tiny", tmp_path_factory.mktemp("models"))) as url:
        yield url


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stub() -> AsyncIterator[StubServer]:
    async with StubServer() as server:
        yield server


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def gate(llama_url: str) -> Gate:
    return Gate(OpenAIBackend("llama", llama_url, model="llama", tier="cpu", max_concurrency=1, max_queue=8))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def worker(kafka_settings: KafkaSettings, redis8_url: str, stub: StubServer,
                 gate: Gate) -> AsyncIterator[CloudWorker]:
    settings = CloudSettings(
        kafka=kafka_settings, backend="router", redis_url=redis8_url, group_id=f"routed-{uuid.uuid4().hex[:6]}",
        model_version=f"v-{uuid.uuid4().hex[:6]}", session_timeout_ms=2_000, heartbeat_interval_ms=500,
        retry_base_ms=10, retry_cap_ms=50, retry_delay_ms=1_000, max_rounds=1, breaker_threshold=100,
        overload_hold_ms=50,
        ratelimit=RateLimitSettings(device_requests=DEVICE_LIMIT, device_tokens=0, tenant_tokens=0),
    )
    primary = OpenAIBackend("vllm", stub.url, model="stub", tier="gpu", max_concurrency=4)
    async with CloudWorker(settings, backends=[(primary, 0.5), (gate, 30.0)]) as running:
        await asyncio.wait_for(running.ready.wait(), WAIT_S)
        yield running


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def retries(kafka_settings: KafkaSettings) -> AsyncIterator[Tail]:
    async with Tail(kafka_settings, RETRY_TOPIC) as tail:
        yield tail


@pytest.fixture(autouse=True)
def _reset(stub: StubServer, gate: Gate) -> None:
    stub.mode = "ok"
    gate.closed = False


def _unique(prompt: str) -> str:
    return f"{prompt} [{uuid.uuid4().hex[:8]}]"


async def _ask(producer: AIOKafkaProducer, env: Envelope[Any]) -> None:
    await producer.send_and_wait(kafka_uplink(type(env.data).KIND), encode(env), key=env.key.encode())


async def _reply(results: Tail, env: Envelope[Any], count: int = 1, within_s: float = WAIT_S) -> list[InferenceResult]:
    found = await results.wait_for(_for_request(env.data.request.request_id), count=count, within_s=within_s)
    return [e.data for _, e in found]


async def test_primary_answers_then_the_cache_does(worker: CloudWorker, producer: AIOKafkaProducer,
                                                   results: Tail, stub: StubServer) -> None:
    prompt = _unique("How do I reset the gateway password?")
    first = _escalation(prompt, device="d-cache")
    await _ask(producer, first)
    [reply] = await _reply(results, first)
    assert (reply.status, reply.route) == ("ok", "cloud")
    assert reply.reason.startswith("vllm (gpu): primary | escalated")
    assert reply.text == f"echo: {prompt}"

    calls = stub.requests
    again = _escalation(prompt.lower(), device="d-cache")
    await _ask(producer, again)
    [cached] = await _reply(results, again)
    assert (cached.status, cached.route, cached.text) == ("ok", "cache", reply.text)
    assert cached.reason == "exact cache hit"
    assert stub.requests == calls

    other_tenant = make(again.data.model_copy(update={"request": InferenceRequest(request_id=new_id(),
                                                                                 prompt=prompt)}),
                        tenant="globex", device="d-cache")
    await _ask(producer, other_tenant)
    [isolated] = await _reply(results, other_tenant)
    assert isolated.route == "cloud"  # never another tenant's cache entry


async def test_primary_503_falls_back_to_the_llama_server(worker: CloudWorker, producer: AIOKafkaProducer,
                                                          results: Tail, stub: StubServer) -> None:
    stub.mode = "503"
    env = _escalation(_unique("Tell me about pumps."), device="d-503")
    await _ask(producer, env)
    [reply] = await _reply(results, env)
    assert (reply.status, reply.route, reply.model_id) == ("ok", "cloud", "llama")
    assert reply.reason.startswith("llama (cpu): fallback after vllm: overloaded (HTTP 503")
    assert reply.scores["fallback"] == 1.0


async def test_hung_primary_times_out_to_the_replica(worker: CloudWorker, producer: AIOKafkaProducer,
                                                     results: Tail, stub: StubServer) -> None:
    stub.mode = "hang"
    env = _escalation(_unique("Tell me about valves."), device="d-hang")
    started = time.monotonic()
    await _ask(producer, env)
    [reply] = await _reply(results, env)
    assert reply.status == "ok"
    assert "vllm: timeout" in reply.reason
    assert time.monotonic() - started < 15


async def test_both_saturated_defers_to_the_retry_topic_then_completes(
    worker: CloudWorker, producer: AIOKafkaProducer, results: Tail, retries: Tail, stub: StubServer, gate: Gate
) -> None:
    stub.mode, gate.closed = "503", True
    env = _escalation(_unique("Explain spooling."), device="d-defer", deadline_ms=60_000)
    await _ask(producer, env)
    [deferred] = await _reply(results, env)
    assert deferred.status == "deferred"
    assert deferred.reason.startswith("deferred: all backends busy")
    assert deferred.scores["retry_after_ms"] == 1000.0
    [(_, queued)] = await retries.wait_for(lambda e: e.id == env.id)
    assert queued.data == env.data
    stub.mode = "ok"  # capacity is back: the retry consumer answers after the not-before time
    replies = await _reply(results, env, count=2)
    assert [r.status for r in replies] == ["deferred", "ok"]
    assert replies[1].reason.startswith("vllm (gpu): primary")


async def test_deferred_past_its_deadline_fails_with_the_reason(
    worker: CloudWorker, producer: AIOKafkaProducer, results: Tail, stub: StubServer, gate: Gate
) -> None:
    stub.mode, gate.closed = "503", True
    env = _escalation(_unique("Explain backoff."), device="d-deadline", deadline_ms=2_500)
    await _ask(producer, env)
    replies = await _reply(results, env, count=2)
    assert [r.status for r in replies] == ["deferred", "failed"]
    assert "deadline exceeded" in replies[1].reason

    late = make(InferenceRequest(request_id=new_id(), prompt="too late", deadline_ms=1_000), tenant="acme",
                device="d-deadline")
    late = late.model_copy(update={"time": datetime.now(UTC) - timedelta(seconds=5)})
    await producer.send_and_wait(kafka_uplink("request"), encode(late), key=late.key.encode())
    [(_, expired)] = await results.wait_for(_for_request(late.data.request_id))
    assert expired.data.status == "failed"
    assert expired.data.reason.startswith("deadline exceeded")


async def test_device_rate_limit_rejects_with_a_result(worker: CloudWorker, producer: AIOKafkaProducer,
                                                       results: Tail) -> None:
    envs = [_escalation(_unique(f"question {i}"), device="d-limited") for i in range(DEVICE_LIMIT + 2)]
    for env in envs:
        await _ask(producer, env)
    statuses = [(await _reply(results, env))[0] for env in envs]
    assert [r.status for r in statuses].count("ok") == DEVICE_LIMIT
    rejected = [r for r in statuses if r.status == "rejected"]
    assert len(rejected) == 2
    assert rejected[0].reason.startswith("rejected: device rate limit")
    assert rejected[0].scores["retry_after_ms"] > 0


async def test_duplicate_delivery_is_answered_once(worker: CloudWorker, producer: AIOKafkaProducer,
                                                   results: Tail, stub: StubServer) -> None:
    env = _escalation(_unique("Once only."), device="d-dup")
    calls = stub.requests
    await _ask(producer, env)
    await _ask(producer, env)
    follow = _escalation(_unique("after the duplicate"), device="d-dup")
    await _ask(producer, follow)
    await _reply(results, follow)  # same partition, so the duplicate was handled before this
    assert len(await _reply(results, env)) == 1
    assert stub.requests == calls + 2


class _ListSink:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Envelope[Any]]] = []

    async def send(self, topic: str, envelope: Envelope[Any], *, headers: dict[str, str] | None = None) -> None:
        self.sent.append((topic, envelope))


async def test_replay_after_restart_gets_the_stored_answer(worker: CloudWorker, redis8_url: str) -> None:
    """A redelivery reaching a fresh process (empty in-memory dedup) is answered from Redis, not re-run."""
    assert worker.responder is not None
    redis = Redis.from_url(redis8_url)
    store = ReplyStore(redis, prefix=f"replay:{uuid.uuid4().hex[:6]}")
    env = _escalation(_unique("Replay me."), device="d-replay")
    runs: list[str] = []

    class Counting:
        async def respond(self, envelope: Envelope[Any], *, attempt: int = 0) -> Envelope[InferenceResult]:
            runs.append(envelope.id)
            assert worker.responder is not None
            return await worker.responder.respond(envelope, attempt=attempt)

    sinks = [_ListSink(), _ListSink()]
    for sink in sinks:  # two process lifetimes: each starts with an empty dedup set
        handler = UplinkHandler(Counting(), sink, RecentIds(10), store=store)
        await handler.handle(encode(env), topic=kafka_uplink("escalation"), kind="escalation")
    await redis.aclose()
    assert runs == [env.id]
    [(_, first)], [(_, replayed)] = sinks[0].sent, sinks[1].sent
    assert encode(first) == encode(replayed)  # byte for byte: same reply id, downstream dedups it


async def test_retry_chain_gives_up_after_max_attempts_with_the_reason() -> None:
    """Deferred again and again: re-published with a growing attempt number, then a `failed` result."""
    from cloud.core.replies import failed as failed_reply  # noqa: PLC0415
    from cloud.worker import ATTEMPT, NOT_BEFORE  # noqa: PLC0415

    class AlwaysBusy:
        async def respond(self, envelope: Envelope[Any], *, attempt: int = 0) -> Envelope[InferenceResult]:
            return failed_reply(envelope, "deferred: all backends busy", model_id="m", model_version="1",
                                latency_ms=1.0, status="deferred", scores={"retry_after_ms": 1.0})

    sink = _ListSink()
    handler = UplinkHandler(AlwaysBusy(), sink, RecentIds(100), max_attempts=2)
    env = _escalation(_unique("never served"), device="d-giveup", deadline_ms=60_000)
    headers: dict[str, str] = {}
    for _ in range(3):  # the first delivery, then each pass through the retry topic
        await handler.handle(encode(env), topic=RETRY_TOPIC if headers else kafka_uplink("escalation"),
                             kind=None if headers else "escalation", headers=headers)
        # What the retry consumer would read next: the attempt number the last re-publish carried.
        headers = {ATTEMPT: str(sum(t == RETRY_TOPIC for t, _ in sink.sent)),
                   NOT_BEFORE: str(int(time.time() * 1000))}
    topics = [t for t, _ in sink.sent]
    assert topics == [RETRY_TOPIC, RESULTS, RETRY_TOPIC, RESULTS]
    statuses = [e.data.status for t, e in sink.sent if t == RESULTS]
    assert statuses == ["deferred", "failed"]
    assert sink.sent[-1][1].data.reason.startswith("gave up after 2 retries")
