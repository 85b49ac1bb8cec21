"""Kafka helpers shared by the cloud worker tests: a topic tail, a producer, and module-scoped fixtures.

A test module uses the fixtures `producer` and `results` by importing `producer_fixture` and `results_fixture` (imported
fixtures are registered under their `name=`); each module then gets its own instances, on its own
module-scoped event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from ebrain.config import KafkaSettings
from ebrain.kafka import client_options, producer_options
from schemas import Envelope, InferenceResult, InvalidMessage, decode
from schemas.topics import kafka_downlink

RESULTS = kafka_downlink("result")
WAIT_S = 30.0


class Tail:
    """Reads a topic from the beginning in the background; tests wait on what arrived."""

    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(topic, auto_offset_reset="earliest", **client_options(settings))
        self.records: list[tuple[bytes | None, bytes]] = []
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Tail:
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    async def _run(self) -> None:
        async for record in self._consumer:
            async with self._changed:
                self.records.append((record.key, record.value))
                self._changed.notify_all()

    def envelopes(self) -> list[tuple[bytes | None, Envelope[Any]]]:
        """Every record that decodes; others (e.g. garbage another test wrote to the shared topic) are skipped."""
        out = []
        for key, value in self.records:
            try:
                out.append((key, decode(value)))
            except InvalidMessage:
                continue
        return out

    async def wait_for(
        self, predicate: Callable[[Envelope[Any]], bool], *, count: int = 1, within_s: float = WAIT_S
    ) -> list[tuple[bytes | None, Envelope[Any]]]:
        """The first `count` (key, envelope) pairs matching `predicate`, or TimeoutError at the deadline."""
        async with asyncio.timeout(within_s), self._changed:
            while len(found := [(k, e) for k, e in self.envelopes() if predicate(e)]) < count:
                await self._changed.wait()
        return found


async def read_until(kafka: KafkaSettings, topic: str, until: Callable[[list[Any]], bool],
                     deadline_s: float = 60.0) -> list[Any]:
    """Every record of `topic` from the start, once `until(records)` holds (AssertionError at the deadline)."""
    consumer = AIOKafkaConsumer(topic, **client_options(kafka), group_id=None, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    found: list[Any] = []
    try:
        async with asyncio.timeout(deadline_s):
            while not until(found):
                batches = await consumer.getmany(timeout_ms=200)
                found += [r for recs in batches.values() for r in recs]
    except TimeoutError:
        raise AssertionError(f"{topic}: condition not met with {len(found)} records") from None
    finally:
        await consumer.stop()
    return found


def for_request(request_id: str) -> Callable[[Envelope[Any]], bool]:
    """Predicate: a result answering `request_id`."""
    return lambda env: isinstance(env.data, InferenceResult) and env.data.request_id == request_id


@asynccontextmanager
async def started_producer(settings: KafkaSettings) -> AsyncIterator[AIOKafkaProducer]:
    """A started producer with the project's options, stopped on exit."""
    producer = AIOKafkaProducer(**producer_options(settings))
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module", name="producer")
async def producer_fixture(kafka_settings: KafkaSettings) -> AsyncIterator[AIOKafkaProducer]:
    async with started_producer(kafka_settings) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="module", scope="module", name="results")
async def results_fixture(kafka_settings: KafkaSettings) -> AsyncIterator[Tail]:
    async with Tail(kafka_settings, RESULTS) as tail:
        yield tail
