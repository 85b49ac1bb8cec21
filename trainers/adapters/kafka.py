"""Kafka adapters of the rollout: ModelUpdate orders out on `ebrain.down.model_update` (the gateway forwards
them to `ebrain/{t}/{d}/down/model_update`), device telemetry in from `ebrain.telemetry`.

Both are async context managers with idempotent start/stop. The telemetry window is bounded: beyond
`capacity` samples the oldest is dropped and counted (`dropped`), since a verdict needs only each device's
first and last sample on a version.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterable
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from ebrain.config import KafkaSettings
from ebrain.kafka import client_options, ensure_topics, producer_options
from schemas import ModelUpdate, Telemetry
from schemas.codec import decode, encode
from schemas.envelope import make
from schemas.topics import kafka_downlink, kafka_uplink
from trainers.core.rollout import Sample

log = logging.getLogger(__name__)

MODEL_UPDATE_TOPIC = kafka_downlink(ModelUpdate.KIND)
TELEMETRY_TOPIC = kafka_uplink(Telemetry.KIND)


class UpdatePublisher:
    """Sends one ModelUpdate envelope per device, keyed tenant/device, acks=all."""

    def __init__(self, settings: KafkaSettings, *, source: str = "ebrain://cloud/trainer") -> None:
        self._settings = settings
        self._source = source
        self._producer: Any = None
        self.sent = 0

    async def __aenter__(self) -> Self:
        if self._producer is None:
            from aiokafka import AIOKafkaProducer  # noqa: PLC0415

            await ensure_topics(self._settings, [MODEL_UPDATE_TOPIC, TELEMETRY_TOPIC])
            producer = AIOKafkaProducer(**producer_options(self._settings))
            await producer.start()
            self._producer = producer
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def publish(self, update: ModelUpdate, devices: Iterable[tuple[str, str]]) -> int:
        """Send `update` to each (tenant, device); returns how many were acknowledged by Kafka."""
        if self._producer is None:
            raise RuntimeError("publisher not started")
        futures = []
        for tenant, device in devices:
            envelope = make(update, tenant=tenant, device=device, source=self._source)
            futures.append(await self._producer.send(MODEL_UPDATE_TOPIC, encode(envelope), key=envelope.key.encode()))
        await self._producer.flush()
        for fut in futures:
            await fut  # raises if Kafka refused one
        self.sent += len(futures)
        log.info("model update sent", extra={"version": update.version, "canary": update.canary,
                                             "devices": len(futures)})
        return len(futures)


class TelemetryWindow:
    """Collects telemetry samples newer than `since` from `ebrain.telemetry` (no consumer group: a window is
    read from the start of the topic and filtered by envelope time, so nothing sent after `since` is missed)."""

    def __init__(self, settings: KafkaSettings, *, since: datetime, capacity: int = 10_000) -> None:
        self._settings = settings
        self._since = since
        self._samples: deque[Sample] = deque(maxlen=capacity)
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()
        self.dropped = 0
        self.invalid = 0

    async def __aenter__(self) -> Self:
        if self._consumer is None:
            from aiokafka import AIOKafkaConsumer  # noqa: PLC0415

            await ensure_topics(self._settings, [TELEMETRY_TOPIC])
            consumer = AIOKafkaConsumer(TELEMETRY_TOPIC, group_id=None, auto_offset_reset="earliest",
                                        enable_auto_commit=False, **client_options(self._settings))
            await consumer.start()
            self._consumer = consumer
            self._task = asyncio.create_task(self._read(), name="trainer-telemetry")
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def _read(self) -> None:
        async for message in self._consumer:
            self.add_raw(message.value)

    def add_raw(self, raw: bytes) -> None:
        """Decode one telemetry message and keep it if it belongs to the window."""
        try:
            envelope = decode(raw)
        except ValueError:
            self.invalid += 1
            return
        data = envelope.data
        if not isinstance(data, Telemetry) or envelope.time < self._since:
            return
        if len(self._samples) == self._samples.maxlen:
            self.dropped += 1
        self._samples.append(Sample(f"{envelope.tenant}/{envelope.device}", data.model_version,
                                    envelope.time.timestamp(), dict(data.counters)))
        self._arrived.set()

    def samples(self) -> list[Sample]:
        """A copy of the window so far."""
        return list(self._samples)

    async def wait_new(self, timeout_s: float) -> bool:
        """Wait until a sample arrives after this call, at most `timeout_s`; True if one did."""
        self._arrived.clear()
        try:
            await asyncio.wait_for(self._arrived.wait(), timeout_s)
        except TimeoutError:
            return False
        return True
