"""Kafka in and out for ingestion (aiokafka): batches of records, offsets committed only after the batch's
dataset commit and its dead letters were acknowledged. A failed batch is re-read from its first offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from cloud.ingest.ingestor import Message
from ebrain.config import KafkaSettings
from ebrain.kafka import client_options, producer_options
from ebrain.kafka_ready import AssignmentWatch
from schemas import Envelope, encode
from schemas.topics import KAFKA_DEADLETTER

log = logging.getLogger(__name__)

BatchHandler = Callable[[list[Message]], Awaitable[list[Envelope[Any]]]]




class BatchConsumer:
    """Polls up to `max_records`, hands them to `handler`, publishes its dead letters, then commits."""

    def __init__(self, settings: KafkaSettings, topics: Sequence[str], *, group_id: str, auto_offset_reset: str,
                 max_records: int, timeout_ms: int, session_timeout_ms: int, heartbeat_interval_ms: int,
                 ready: asyncio.Event | None = None, retry_s: float = 1.0) -> None:
        self._consumer = AIOKafkaConsumer(
            group_id=group_id, enable_auto_commit=False, auto_offset_reset=auto_offset_reset,
            session_timeout_ms=session_timeout_ms, heartbeat_interval_ms=heartbeat_interval_ms,
            **client_options(settings))
        self._producer = AIOKafkaProducer(**producer_options(settings))
        self._topics = list(topics)
        self._max_records = max_records
        self._timeout_ms = timeout_ms
        self._retry_s = retry_s
        self.ready = ready or asyncio.Event()
        self.batches_failed = 0
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        """Connect the producer and join the group."""
        await self._producer.start()
        try:
            self._consumer.subscribe(self._topics, listener=AssignmentWatch(self._topics, self.ready))
            await self._consumer.start()
        except BaseException:
            await self._producer.stop()
            raise

    async def stop(self) -> None:
        """Leave the group and flush the producer."""
        try:
            await self._consumer.stop()
        finally:
            await self._producer.stop()

    def request_stop(self) -> None:
        """Let `run` return after the batch in hand is committed (it polls at most `timeout_ms` more)."""
        self._stopping.set()

    async def run(self, handler: BatchHandler) -> None:
        """Poll, handle, dead-letter, commit until `request_stop`. A failing batch is retried from its first
        offsets."""
        while not self._stopping.is_set():
            polled = await self._consumer.getmany(timeout_ms=self._timeout_ms, max_records=self._max_records)
            batch = [Message(r.topic, r.key, r.value) for records in polled.values() for r in records]
            try:
                letters = await handler(batch)
                for letter in letters:
                    await self._producer.send_and_wait(KAFKA_DEADLETTER, encode(letter), key=letter.key.encode())
                if batch:
                    await self._consumer.commit()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.batches_failed += 1
                log.exception("ingest batch failed; re-reading it", extra={"messages": len(batch)})
                for tp, records in polled.items():
                    if records:
                        self._consumer.seek(tp, records[0].offset)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._retry_s)
