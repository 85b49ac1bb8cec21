"""aiokafka adapters: start clients once Kafka answers, and produce a record until Kafka has it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner

from ebrain.kafka import client_options, ensure_topics, producer_options
from gateway import metrics
from gateway.core import Backoff, KafkaRecord
from gateway.settings import GatewaySettings
from schemas.topics import all_kafka_topics

log = logging.getLogger(__name__)
T = TypeVar("T")

# Kafka will never take these however often we retry: the caller dead-letters instead.
NOT_RETRYABLE: tuple[type[Exception], ...] = (MessageSizeTooLargeError,)


async def retry(op: str, attempt_fn: Callable[[], Awaitable[T]], backoff: Backoff) -> T:
    """Run `attempt_fn` until it succeeds, sleeping a bounded backoff after each transient failure."""
    attempt = 0
    while True:
        try:
            return await attempt_fn()
        except NOT_RETRYABLE:
            raise
        except (KafkaError, OSError) as exc:
            delay = backoff.delay(attempt)
            metrics.RETRIES.labels(op=op).inc()
            metrics.KAFKA_ERRORS.labels(op=op, error=type(exc).__name__).inc()
            log.warning("kafka unavailable, retrying", extra={"op": op, "error": repr(exc), "retry_in_s": delay})
            attempt += 1
            await asyncio.sleep(delay)


async def _started(client: Any) -> Any:
    try:
        await client.start()
    except BaseException:
        await client.stop()
        raise
    return client


def _backoff(settings: GatewaySettings) -> Backoff:
    return Backoff(max_s=settings.retry_max_s)


async def ensure_all_topics(settings: GatewaySettings) -> None:
    """Create every topic the system uses, waiting (with backoff) until Kafka answers."""
    await retry("ensure_topics", lambda: ensure_topics(settings.kafka, all_kafka_topics()), _backoff(settings))


async def start_producer(settings: GatewaySettings) -> AIOKafkaProducer:
    """A started producer (acks=all), retried until Kafka answers."""

    def attempt() -> Awaitable[AIOKafkaProducer]:
        return _started(
            AIOKafkaProducer(**producer_options(settings.kafka), request_timeout_ms=settings.kafka_request_timeout_ms)
        )

    return await retry("producer_start", attempt, _backoff(settings))


async def start_consumer(settings: GatewaySettings, topics: list[str]) -> AIOKafkaConsumer:
    """A started consumer in the downlink group; offsets are committed by hand after MQTT PUBACK."""

    def attempt() -> Awaitable[AIOKafkaConsumer]:
        return _started(
            AIOKafkaConsumer(
                *topics,
                **client_options(settings.kafka),
                group_id=settings.downlink_group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                request_timeout_ms=max(settings.kafka_request_timeout_ms, 20_000),
            )
        )

    return await retry("consumer_start", attempt, _backoff(settings))


async def send(producer: AIOKafkaProducer, record: KafkaRecord) -> asyncio.Future[Any]:
    """Hand `record` to the producer's batch; the returned future resolves when Kafka acked it."""
    fut: asyncio.Future[Any] = await producer.send(
        record.topic, value=record.value, key=record.key, headers=list(record.headers)
    )
    return fut


# Same key -> same partition as aiokafka's own send() (Java-compatible murmur2), so batching changes nothing there.
_PARTITIONER = DefaultPartitioner()
Sent = asyncio.Future[Any] | BaseException


async def send_many(producer: AIOKafkaProducer, records: Sequence[KafkaRecord]) -> list[Sent]:
    """Hand `records` to Kafka as one batch per partition, in order; per record, the future of its batch
    (resolved when Kafka acked the whole batch) or the exception that kept it from being queued.

    One future per batch instead of one per record: aiokafka's per-record send() was a large share of the
    gateway's CPU per message.
    """
    results: list[Sent | None] = [None] * len(records)
    open_batches: dict[tuple[str, int], tuple[Any, list[int]]] = {}
    partitions: dict[str, list[int]] = {}

    async def ship(tp: tuple[str, int]) -> None:
        builder, indexes = open_batches.pop(tp)
        try:
            sent: Sent = await producer.send_batch(builder, tp[0], partition=tp[1])
        except (KafkaError, OSError) as exc:
            sent = exc
        for i in indexes:
            results[i] = sent

    try:
        for i, r in enumerate(records):
            if r.topic not in partitions:
                partitions[r.topic] = sorted(await producer.partitions_for(r.topic))
            tp = (r.topic, _PARTITIONER(r.key, partitions[r.topic], partitions[r.topic]))
            builder, indexes = open_batches.setdefault(tp, (producer.create_batch(), []))
            if builder.append(key=r.key, value=r.value, timestamp=None, headers=list(r.headers)) is None:
                await ship(tp)  # full: this partition's next records go in a new batch, after it
                builder, indexes = open_batches.setdefault(tp, (producer.create_batch(), []))
                if builder.append(key=r.key, value=r.value, timestamp=None, headers=list(r.headers)) is None:
                    open_batches.pop(tp)
                    results[i] = MessageSizeTooLargeError(f"{len(r.value)} bytes exceed the producer batch size")
                    continue
            indexes.append(i)
        for tp in list(open_batches):
            await ship(tp)
    except (KafkaError, OSError) as exc:  # e.g. no metadata while Kafka is down
        for i, sent in enumerate(results):
            if sent is None:
                results[i] = exc
    return [r if r is not None else KafkaError("record was not sent") for r in results]


async def produce(producer: AIOKafkaProducer, record: KafkaRecord, settings: GatewaySettings) -> None:
    """Produce `record` and wait for Kafka's ack, retrying transient failures (never gives up)."""

    async def attempt() -> None:
        started = time.perf_counter()
        await (await send(producer, record))
        metrics.KAFKA_PRODUCE_SECONDS.observe(time.perf_counter() - started)

    async def attempt_after_failure() -> None:
        # A restarted broker may have lost its topics (e.g. in-memory storage); recreating is idempotent.
        await ensure_topics(settings.kafka, all_kafka_topics())
        await attempt()

    try:
        await attempt()
    except NOT_RETRYABLE:
        raise
    except (KafkaError, OSError):
        await retry("produce", attempt_after_failure, _backoff(settings))
