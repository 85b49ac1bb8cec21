"""Uplink: MQTT (shared subscription, manual ack) -> Kafka. A message is acked only once Kafka has it.

Two steps joined by a bounded queue (the in-flight window): the reader validates each message and hands
its record to the producer's batch; the acker awaits the produce futures in arrival order, retries
failures, and only then acks over MQTT. MQTT v5 requires acks in arrival order, and awaiting in order
keeps each device's records in order on its partition (same key -> same partition).

Messages over a rate limit never reach Kafka: they are acked in turn, counted, and a request or escalation
gets a `rejected` reply on the device's downlink through a bounded reply queue (full -> counted overflow).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from ebrain.mqtt import MqttClient, MqttError, MqttMessage
from ebrain.observability import trace
from gateway import kafka_io, metrics
from gateway.core import KafkaRecord, MqttOut, dead_letter_record, uplink_record, validate_uplink
from gateway.core.ratelimit import Limit, RateLimiter
from gateway.core.reject import reject_reply
from gateway.settings import GatewaySettings
from schemas import InvalidMessage, Reason
from schemas.topics import parse_mqtt

log = logging.getLogger(__name__)
FLUSH_AT = 256


@dataclass
class UplinkStats:
    """Counts for this process (tests and the CLI read them; Prometheus has the fleet view)."""

    received: int = 0
    acked: int = 0
    produced: int = 0
    deadlettered: int = 0
    rate_limited: int = 0
    replies: int = 0


@dataclass(slots=True)
class _InFlight:
    message: MqttMessage
    record: KafkaRecord | None  # None: refused before Kafka (rate limited)
    kind: str
    outcome: str  # "produced", "deadlettered" or "rate_limited"
    started: float
    reply: MqttOut | None = None
    future: asyncio.Future[Any] | None = None
    send_error: BaseException | None = None


def _kind_of(topic: str) -> str:
    try:
        return parse_mqtt(topic).kind
    except InvalidMessage:
        return "unknown"


class Uplink:
    """Runs until cancelled; owns no connections (the Gateway passes them in)."""

    def __init__(
        self, settings: GatewaySettings, mqtt: MqttClient, producer: AIOKafkaProducer, stats: UplinkStats
    ) -> None:
        self._settings = settings
        self._mqtt = mqtt
        self._producer = producer
        self.stats = stats
        self._limiter = RateLimiter(
            Limit(settings.device_rate_per_s, settings.device_burst),
            Limit(settings.tenant_rate_per_s, settings.tenant_burst),
        )
        self._replies: asyncio.Queue[MqttOut] = asyncio.Queue(maxsize=settings.max_pending_replies)
        # Cleared while the acker recovers a failed produce, so no newer record overtakes it.
        self._kafka_ok = asyncio.Event()
        self._kafka_ok.set()

    async def run(self) -> None:
        """Bridge until cancelled (or until the MQTT client stops)."""
        window: asyncio.Queue[_InFlight | None] = asyncio.Queue(maxsize=self._settings.max_inflight)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._ack_in_order(window), name="uplink-acker")
            replier = tg.create_task(self._send_replies(), name="uplink-replies")
            await self._read(window)
            replier.cancel()

    async def _read(self, window: asyncio.Queue[_InFlight | None]) -> None:
        # Prepared items are handed to Kafka in batches: whenever the MQTT client has nothing more queued (so a
        # lone message goes out at once), every FLUSH_AT items, and before the window could overflow.
        pending: list[_InFlight] = []
        async for message in self._mqtt.messages():
            self.stats.received += 1
            metrics.UPLINK_BYTES.inc(len(message.payload))
            pending.append(self._prepare(message))
            if (len(pending) >= FLUSH_AT or self._mqtt.queued_incoming == 0
                    or window.qsize() + len(pending) >= self._settings.max_inflight):
                await self._flush(pending, window)
                pending = []
        await self._flush(pending, window)
        await window.put(None)

    async def _flush(self, pending: list[_InFlight], window: asyncio.Queue[_InFlight | None]) -> None:
        to_kafka = [item for item in pending if item.record is not None]
        if to_kafka:
            await self._kafka_ok.wait()
            sent = await kafka_io.send_many(self._producer, [item.record for item in to_kafka if item.record])
            for item, result in zip(to_kafka, sent, strict=True):
                if isinstance(result, BaseException):
                    item.send_error = result  # the acker retries it, in order
                else:
                    item.future = result
        for item in pending:
            if window.full():
                await window.put(item)  # the in-flight bound: wait for the acker
            else:
                window.put_nowait(item)  # no coroutine per message on the hot path
        metrics.UPLINK_INFLIGHT.set(window.qsize())

    def _prepare(self, message: MqttMessage) -> _InFlight:
        started = time.perf_counter()
        s = self._settings
        try:
            envelope = validate_uplink(message.topic, message.payload, max_bytes=s.max_message_bytes, tenants=s.tenants)
        except InvalidMessage as exc:
            return self._dead(message, exc, started)
        kind = envelope.data.KIND
        if self._limiter.enabled and kind in s.rate_limited_kinds:
            scope = self._limiter.check(envelope.tenant, envelope.device, time.monotonic())
            if scope is not None:
                reply = reject_reply(envelope, scope, traceparent_in=trace.from_properties(message.user_properties))
                action = "replied" if reply is not None else "dropped"
                metrics.RATE_LIMITED.labels(scope=scope.value, kind=kind, action=action).inc()
                log.info(
                    "uplink rate limited",
                    extra={"msg_id": envelope.id, "tenant": envelope.tenant, "device": envelope.device,
                           "scope": scope.value, "kind": kind, "action": action},
                )
                return _InFlight(message, None, kind, "rate_limited", started, reply=reply)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "uplink accepted",
                extra={"msg_id": envelope.id, "tenant": envelope.tenant, "device": envelope.device,
                       "trace_id": envelope.trace_id, "kind": envelope.data.KIND},
            )
        record = uplink_record(envelope, raw=message.payload,
                               traceparent_in=trace.from_properties(message.user_properties))
        return _InFlight(message, record, kind, "produced", started)

    def _dead(self, message: MqttMessage, error: InvalidMessage, started: float) -> _InFlight:
        record = dead_letter_record(message.topic, message.payload, error)
        metrics.DEADLETTERS.labels(reason=error.reason.value).inc()
        log.warning(
            "uplink message dead-lettered",
            extra={
                "reason": error.reason.value,
                "detail": error.detail[:300],
                "topic": message.topic[:200],
                "size": len(message.payload),
                "tenant": dict(record.headers)["tenant"].decode(),
                "device": dict(record.headers)["device"].decode(),
            },
        )
        return _InFlight(message, record, _kind_of(message.topic), "deadlettered", started)

    async def _ack_in_order(self, window: asyncio.Queue[_InFlight | None]) -> None:
        while (item := window.get_nowait() if window.qsize() else await window.get()) is not None:
            if item.record is not None:
                await self._settle(item)
                metrics.KAFKA_PRODUCE_SECONDS.observe(time.perf_counter() - item.started)
            self._mqtt.ack(item.message)
            metrics.uplink_messages(item.kind, item.outcome).inc()
            self.stats.acked += 1
            if self.stats.acked % 64 == 0 or window.empty():
                metrics.UPLINK_INFLIGHT.set(window.qsize())
            if item.outcome == "produced":
                self.stats.produced += 1
            elif item.outcome == "deadlettered":
                self.stats.deadlettered += 1
            else:
                self.stats.rate_limited += 1
                self._queue_reply(item.reply)

    def _queue_reply(self, reply: MqttOut | None) -> None:
        if reply is None:
            return
        try:
            self._replies.put_nowait(reply)
        except asyncio.QueueFull:
            metrics.REJECT_REPLIES.labels(outcome="overflow").inc()
            log.warning("reject reply dropped: reply queue full", extra={"msg_id": reply.envelope.id})

    async def _send_replies(self) -> None:
        while True:
            reply = await self._replies.get()
            try:
                await self._mqtt.publish(reply.topic, reply.payload, qos=1, user_properties=reply.user_properties)
            except MqttError as exc:
                metrics.REJECT_REPLIES.labels(outcome="failed").inc()
                log.warning("reject reply not published", extra={"msg_id": reply.envelope.id, "error": repr(exc)})
                continue
            metrics.REJECT_REPLIES.labels(outcome="published").inc()
            metrics.BYTES.labels(direction="downlink").inc(len(reply.payload))
            self.stats.replies += 1

    async def _settle(self, item: _InFlight) -> None:
        """Return once Kafka has the item's record (or its dead letter, if Kafka can never take it)."""
        assert item.record is not None
        try:
            if item.future is None:
                raise item.send_error or RuntimeError("record was never sent")
            await item.future
        except kafka_io.NOT_RETRYABLE:
            # Kafka refused the record's whole batch: try it alone, and dead-letter it only if refused alone.
            try:
                await self._recover(item)
            except kafka_io.NOT_RETRYABLE as exc:
                self._too_big(item, exc)
                await self._recover(item)
        except (KafkaError, OSError) as exc:
            metrics.KAFKA_ERRORS.labels(op="produce", error=type(exc).__name__).inc()
            log.warning("kafka produce failed, retrying in order", extra={"error": repr(exc)})
            await self._recover(item)

    async def _recover(self, item: _InFlight) -> None:
        assert item.record is not None
        self._kafka_ok.clear()
        try:
            await kafka_io.produce(self._producer, item.record, self._settings)
        finally:
            self._kafka_ok.set()

    def _too_big(self, item: _InFlight, exc: BaseException) -> None:
        error = InvalidMessage(Reason.OVERSIZE, f"Kafka refused the record: {exc!r}"[:300])
        replacement = self._dead(item.message, error, item.started)
        item.record, item.outcome = replacement.record, replacement.outcome
