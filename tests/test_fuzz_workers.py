"""Fuzzing the cloud worker and the ingest worker: malformed records injected straight into their Kafka input
topics (bypassing the gateway) are dead-lettered with a reason, the worker keeps running, and the good messages
around them are answered (cloud) or stored (ingest) exactly once, replayed ids included.

Each test has its own Kafka (hundreds of dead letters stay out of the session broker). The cloud worker runs
the real llama.cpp engine on the tiny random-weight model.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from cloud.app import CloudWorker
from cloud.ingest.app import IngestWorker, build_pipeline
from cloud.ingest.ingestor import ANSWERS, ESCALATIONS, RESULTS
from cloud.ingest.settings import IngestSettings
from cloud.settings import CloudSettings
from ebrain.config import KafkaSettings
from ebrain.kafka import ensure_topics, producer_options
from ebrain.stack import private
from schemas import DeadLetter, InferenceRequest, InferenceResult, Reason, decode, encode, make, new_id
from schemas.codec import MAX_MESSAGE_BYTES
from schemas.deadletter import MAX_RAW_KEPT
from schemas.topics import KAFKA_DEADLETTER, kafka_downlink, kafka_uplink
from tests.fuzz_strategies import bodies, draw_cases
from tests.kafka_tail import read_until

pytestmark = pytest.mark.integration

TENANT = "acme"
WAIT_S = 90.0
REQUESTS, ESCALATIONS_UP = kafka_uplink("request"), kafka_uplink("escalation")
KEY = f"{TENANT}/dev-1".encode()
LetterKey = tuple[str, bytes, int]


@pytest.fixture
def kafka(tmp_path: Path) -> Iterator[KafkaSettings]:
    port = private.free_port()
    proc = private.start_tansu(tmp_path, port)
    yield KafkaSettings(bootstrap=f"127.0.0.1:{port}")
    private.stop(proc)


@pytest.fixture
async def producer(kafka: KafkaSettings) -> AsyncIterator[AIOKafkaProducer]:
    running = AIOKafkaProducer(**producer_options(kafka), max_request_size=4 * 1024 * 1024)
    await running.start()
    yield running
    await running.stop()


def _bad_records(topics: list[str], device: str, n: int) -> list[tuple[str, bytes, bytes, frozenset[Reason]]]:
    """(topic, key, raw, reasons): body malformations spread over `topics`; every other one has the key of the
    good messages (so it shares their partition: a poison pill there would stall them), the rest mangled keys."""
    cases = draw_cases(bodies(TENANT, device, max_bytes=MAX_MESSAGE_BYTES), n)
    mangled = [b"\xff\xfe/\x80", b"no-slash", b"a/b/c", b"UPPER/x", b""]
    return [(topics[i % len(topics)], f"{TENANT}/{device}".encode() if i % 2 else mangled[i // 2 % len(mangled)],
             raw, reasons) for i, (_, raw, reasons) in enumerate(cases)]


def _letter_key(letter: DeadLetter) -> LetterKey:
    return letter.source_topic, base64.b64decode(letter.raw_b64), letter.raw_size


async def _read(kafka: KafkaSettings, topic: str, until: Any, deadline_s: float = WAIT_S) -> list[Any]:
    return await read_until(kafka, topic, until, deadline_s)


async def _check_dead_letters(kafka: KafkaSettings, bad: list[tuple[str, bytes, bytes, frozenset[Reason]]],
                              component: str) -> None:
    """Every bad record has a dead letter of `component` (at least once) with one of its expected reasons."""
    expected: dict[LetterKey, list[frozenset[Reason]]] = defaultdict(list)
    for topic, _key, raw, reasons in bad:
        expected[(topic, raw[:MAX_RAW_KEPT], len(raw))].append(reasons)
    want = Counter({k: len(v) for k, v in expected.items()})

    def ours(records: list[Any]) -> list[DeadLetter]:
        letters = [decode(r.value).data for r in records]
        return [letter for letter in letters if letter.component == component]

    records = await _read(kafka, KAFKA_DEADLETTER, lambda rs: not want - Counter(map(_letter_key, ours(rs))))
    for letter in ours(records):
        allowed = {r.value for reasons in expected[_letter_key(letter)] for r in reasons}
        assert letter.reason in allowed, (letter.reason, letter.detail, allowed)


# -- cloud worker ------------------------------------------------------------------------------------------


def _good_request(n: int) -> bytes:
    env = make(InferenceRequest(request_id=f"g{n}-{new_id()}", prompt=f"question {n}", max_tokens=4),
               tenant=TENANT, device="dev-1")
    return encode(env)


async def test_cloud_worker_dead_letters_malformed_records_and_answers_the_good_ones_once(
    kafka: KafkaSettings, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    bad = _bad_records([REQUESTS, ESCALATIONS_UP], "dev-1", 200)
    # A valid request on the escalation topic is refused there too.
    wrong_topic = _good_request(-1)
    bad.append((ESCALATIONS_UP, f"{TENANT}/dev-1".encode(), wrong_topic, frozenset({Reason.TOPIC_MISMATCH})))
    good = [_good_request(n) for n in range(50)]
    settings = CloudSettings(kafka=kafka, model="tiny", state_dir=tmp_path / "state", group_id=f"c{uuid.uuid4().hex}",
                             session_timeout_ms=2_000, heartbeat_interval_ms=500, n_ctx=256, log_level="WARNING")
    await ensure_topics(kafka, [REQUESTS, ESCALATIONS_UP, KAFKA_DEADLETTER])
    async with CloudWorker(settings) as worker:
        await asyncio.wait_for(worker.ready.wait(), WAIT_S)
        for i, (topic, key, raw, _) in enumerate(bad):
            await producer.send(topic, raw, key=key)
            if i % 4 == 0 and (g := i // 4) < len(good):
                await producer.send(REQUESTS, good[g], key=KEY)
                if g % 10 == 0:  # a replayed id: the very same record again
                    await producer.send(REQUESTS, good[g], key=KEY)
        await producer.flush()
        assert i // 4 >= len(good) - 1, "every good one was sent"

        ids = {decode(raw).data.request_id for raw in good}

        def answered(records: list[Any]) -> set[str]:
            return {decode(r.value).data.request_id for r in records} & ids

        replies = await _read(kafka, kafka_downlink("result"), lambda rs: answered(rs) == ids)
        await _check_dead_letters(kafka, bad, "cloud")
        assert worker.ready.is_set()
        last = _good_request(999)
        await producer.send_and_wait(REQUESTS, last, key=KEY)
        await _read(kafka, kafka_downlink("result"),
                    lambda rs: decode(last).data.request_id in {decode(r.value).data.request_id for r in rs})
    per_id = Counter(decode(r.value).data.request_id for r in replies)
    assert all(per_id[i] == 1 for i in ids), "a replayed id was answered twice"
    assert all(decode(r.value).data.status == "ok" for r in replies)


# -- ingest worker -----------------------------------------------------------------------------------------

WORDS = sorted(set(re.findall(r"\b[a-z]{4,12}\b", (Path(__file__).parents[1] / "README.md").read_text().lower())))


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.sample(WORDS, n)).capitalize() + "."


def _good_result(tenant: str, rng: random.Random) -> bytes:
    result = InferenceResult(request_id=new_id(), route="local", text=_sentence(rng, 30), model_id="m",
                             model_version="1", latency_ms=1.0, prompt=_sentence(rng, 12) + " Why?")
    return encode(make(result, tenant=tenant, device="dev-1"))


def _rows(root: Path, tenant: str) -> int:
    path = root / "MANIFEST.json"
    manifest = json.loads(path.read_text()) if path.exists() else {}
    return sum(f["rows"] for f in manifest.get("files", []) if f["tenant"] == tenant)


async def test_ingest_worker_dead_letters_malformed_records_and_stores_the_good_ones_once(
    kafka: KafkaSettings, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    tenant = TENANT  # the dataset and the Kafka are this test's own
    bad = _bad_records([RESULTS, ESCALATIONS, ANSWERS], "dev-1", 150)
    rng = random.Random(7)
    good = [_good_result(tenant, rng) for _ in range(30)]
    settings = IngestSettings(kafka=kafka, data_dir=tmp_path / "data", ingest_group_id=f"i{uuid.uuid4().hex}",
                              batch_timeout_ms=200, session_timeout_ms=2_000, heartbeat_interval_ms=500)
    await ensure_topics(kafka, [RESULTS, ESCALATIONS, ANSWERS, KAFKA_DEADLETTER])
    async with IngestWorker(settings, pipeline=build_pipeline(settings)) as worker:
        await asyncio.wait_for(worker.ready.wait(), WAIT_S)
        for i, (topic, key, raw, _) in enumerate(bad):
            await producer.send(topic, raw, key=key)
            if i % 5 == 0 and (g := i // 5) < len(good):
                for _ in range(2 if g % 5 == 0 else 1):  # every fifth one replayed
                    await producer.send(RESULTS, good[g], key=KEY)
        await producer.flush()
        async with asyncio.timeout(WAIT_S):
            await worker.wait_until(lambda: _rows(settings.data_dir, tenant) >= len(good))
        await _check_dead_letters(kafka, bad, "ingest")
        assert worker.ready.is_set()
        assert worker.ingestor is not None
        handled = worker.ingestor.handled
        async with asyncio.timeout(WAIT_S):  # and it still takes work
            await producer.send_and_wait(RESULTS, _good_result(tenant, rng), key=KEY)
            await worker.wait_until(lambda: _rows(settings.data_dir, tenant) == len(good) + 1)
        assert worker.ingestor.handled > handled
    assert _rows(settings.data_dir, tenant) == len(good) + 1
