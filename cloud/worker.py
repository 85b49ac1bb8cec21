"""The Kafka adapter: FastStream subscribers on the uplink topics, replies and dead letters out.

Offsets are committed only after the reply (or dead letter) was acknowledged by all in-sync replicas
(`AckPolicy.NACK_ON_ERROR` with acks=all): a crash or a failed publish means redelivery, never loss.
Redeliveries are recognised by envelope id (`RecentIds`), so at-least-once does not answer twice.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiokafka.abc import ConsumerRebalanceListener
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from cloud import metrics
from cloud.core import RecentIds, deadline_at, expect_kind
from cloud.core.replies import failed
from cloud.idempotency import ReplyStore
from cloud.responder import Responder
from cloud.settings import CloudSettings
from ebrain.config import KafkaSettings
from ebrain.observability import trace
from schemas import Envelope, Escalation, InferenceRequest, InvalidMessage, dead_letter, decode, encode
from schemas.topics import KAFKA_DEADLETTER, KAFKA_RETRY, kafka_downlink, kafka_uplink

log = logging.getLogger(__name__)

COMPONENT = "cloud"
RESULT_TOPIC = kafka_downlink("result")
UPLINK_KINDS = (Escalation.KIND, InferenceRequest.KIND)
UPLINK_TOPICS = tuple(kafka_uplink(kind) for kind in UPLINK_KINDS)
RETRY_TOPIC = KAFKA_RETRY
TOPICS = [*UPLINK_TOPICS, RESULT_TOPIC, KAFKA_DEADLETTER, RETRY_TOPIC]
NOT_BEFORE = "ebrain_not_before_ms"
ATTEMPT = "ebrain_attempt"


class Sink(Protocol):
    """Where envelopes go out: returns once the broker acknowledged the write."""

    async def send(self, topic: str, envelope: Envelope[Any], *, headers: dict[str, str] | None = None) -> None: ...


class BrokerSink:
    """Publishes envelopes through a FastStream KafkaBroker, keyed `tenant/device`, waiting for the ack."""

    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def send(self, topic: str, envelope: Envelope[Any], *, headers: dict[str, str] | None = None) -> None:
        ce = {"ce_specversion": envelope.specversion, "ce_id": envelope.id, "ce_type": envelope.type,
              "ce_source": envelope.source, "ebrain_trace_id": envelope.trace_id, **(headers or {})}
        await self._broker.publish(encode(envelope), topic, key=envelope.key.encode(), headers=ce)


class UplinkHandler:
    """One uplink or retry message: decode, refuse or dedup, answer (or defer), send. Raises only when
    sending failed (the offset is then not committed and the message comes again)."""

    def __init__(
        self,
        responder: Responder,
        sink: Sink,
        dedup: RecentIds,
        *,
        store: ReplyStore | None = None,
        default_deadline_ms: int = 30_000,
        max_attempts: int = 10,
        max_wait_s: float = 60.0,
        clock: Any = time.time,
    ) -> None:
        self._responder = responder
        self._sink = sink
        self._dedup = dedup
        self._store = store
        self._default_deadline_ms = default_deadline_ms
        self._max_attempts = max_attempts
        self._max_wait_s = max_wait_s
        self._clock = clock

    async def handle(self, raw: bytes, *, topic: str, kind: str | None, key: bytes | None = None,
                     headers: dict[str, str] | None = None) -> None:
        """Process `raw` from `topic` (`kind` None: any uplink kind, the retry topic); raising means redeliver."""
        try:
            envelope = decode(raw)
            if kind is not None:
                expect_kind(envelope, kind)
            elif type(envelope.data).KIND not in UPLINK_KINDS:
                expect_kind(envelope, Escalation.KIND)
        except InvalidMessage as exc:
            await self._dead_letter(raw, exc, topic=topic, kind=kind or "retry", key=key)
            return
        kind = type(envelope.data).KIND
        attempt = _int((headers or {}).get(ATTEMPT))
        # This worker's span: a child of the record's traceparent; every record it sends for this message carries it.
        span, span_fields = trace.hop(envelope.trace_id, (headers or {}).get(trace.HEADER))
        ctx = {"msg_id": envelope.id, "tenant": envelope.tenant, "device": envelope.device,
               "trace_id": envelope.trace_id, "kind": kind, "attempt": attempt, **span_fields}
        claim = envelope.id if attempt == 0 else f"{envelope.id}#{attempt}"
        if not self._dedup.claim(claim):
            metrics.DUPLICATES.inc()
            metrics.REQUESTS.labels(kind, "duplicate").inc()
            log.info("duplicate skipped", extra=ctx)
            return
        try:
            await self._answer(envelope, attempt, (headers or {}).get(NOT_BEFORE), ctx, {trace.HEADER: span})
        except BaseException:
            # Not answered: let the redelivery through the dedup set.
            self._dedup.release(claim)
            raise

    async def _answer(self, envelope: Envelope[Any], attempt: int, not_before: str | None,
                      ctx: dict[str, Any], span: dict[str, str]) -> None:
        if self._store is not None:
            stored = await self._store.get(envelope.id)
            if stored is not None:
                # Answered before (by us before a restart, or by another replica): the same reply again,
                # same reply id, so downstream dedups it; inference does not run twice.
                await self._sink.send(RESULT_TOPIC, stored, headers=span)
                metrics.REPLAYS.inc()
                metrics.REQUESTS.labels(ctx["kind"], "replayed").inc()
                log.info("replayed stored reply", extra={**ctx, "reply_id": stored.id})
                return
        if attempt > 0:
            await self._wait_until(envelope, _int(not_before) / 1000.0)
            metrics.RETRY_TOPIC.labels("retried").inc()
        reply = await self._responder.respond(envelope, attempt=attempt)
        if reply.data.status == "deferred":
            if attempt + 1 <= self._max_attempts:
                await self._defer(envelope, reply, attempt, ctx, span)
                return
            reply = failed(envelope, f"gave up after {attempt} retries: {reply.data.reason}",
                           model_id=reply.data.model_id, model_version=reply.data.model_version,
                           latency_ms=reply.data.latency_ms)
        if self._store is not None:
            reply = await self._store.put(envelope.id, reply)
        await self._sink.send(RESULT_TOPIC, reply, headers=span)
        metrics.REQUESTS.labels(ctx["kind"], reply.data.status).inc()
        log.info("answered", extra={**ctx, "reply_id": reply.id, "status": reply.data.status,
                                    "route": reply.data.route, "reason": reply.data.reason,
                                    "latency_ms": round(reply.data.latency_ms, 1)})

    async def _defer(self, envelope: Envelope[Any], reply: Envelope[Any], attempt: int,
                     ctx: dict[str, Any], span: dict[str, str]) -> None:
        """Retry topic first (durable), then tell the device once; a crash between them re-defers."""
        delay_ms = reply.data.scores.get("retry_after_ms", 1000.0)
        not_before = int(self._clock() * 1000 + delay_ms)
        await self._sink.send(RETRY_TOPIC, envelope,
                              headers={NOT_BEFORE: str(not_before), ATTEMPT: str(attempt + 1), **span})
        metrics.RETRY_TOPIC.labels("deferred").inc()
        if attempt == 0:
            await self._sink.send(RESULT_TOPIC, reply, headers=span)
        metrics.REQUESTS.labels(ctx["kind"], "deferred").inc()
        log.info("deferred", extra={**ctx, "reason": reply.data.reason, "not_before_ms": not_before})

    async def _wait_until(self, envelope: Envelope[Any], not_before_s: float) -> None:
        """Hold this retry until its not-before time (or its deadline, whichever is first), bounded."""
        deadline_s = deadline_at(envelope, self._default_deadline_ms).timestamp()
        wait = min(not_before_s, deadline_s) - self._clock()
        if wait > 0:
            await asyncio.sleep(min(wait, self._max_wait_s))

    async def _dead_letter(
        self, raw: bytes, error: InvalidMessage, *, topic: str, kind: str, key: bytes | None
    ) -> None:
        tenant, device = _key_parts(key)
        letter = dead_letter(raw, error, source_topic=topic, component=COMPONENT,
                             tenant=tenant, device=device)
        await self._sink.send(KAFKA_DEADLETTER, letter)
        metrics.DEADLETTERS.labels(error.reason.value).inc()
        metrics.REQUESTS.labels(kind, "invalid").inc()
        log.warning("dead-lettered", extra={"reason": error.reason.value, "detail": error.detail[:200],
                                            "topic": topic, "tenant": tenant, "device": device,
                                            "deadletter_id": letter.id})


def _int(value: str | None) -> int:
    try:
        return max(0, int(value or 0))
    except ValueError:
        return 0


def _key_parts(key: bytes | None) -> tuple[str | None, str | None]:
    """Tenant and device from a `tenant/device` Kafka key, if it is one (dead_letter validates them)."""
    try:
        tenant, device = (key or b"").decode().split("/")
    except ValueError:  # UnicodeDecodeError is a ValueError too
        return None, None
    return tenant, device




def security(settings: KafkaSettings) -> BaseSecurity | None:
    """FastStream's security object for the shared Kafka settings (None: plaintext)."""
    ctx = None
    if settings.security_protocol in {"SSL", "SASL_SSL"}:
        ctx = ssl.create_default_context(cafile=settings.ssl_ca_file)
    if not settings.sasl_mechanism:
        return BaseSecurity(ssl_context=ctx) if ctx else None
    kinds = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}
    if settings.sasl_mechanism not in kinds:
        raise ValueError(f"unsupported SASL mechanism {settings.sasl_mechanism!r}")
    password = settings.sasl_password.get_secret_value() if settings.sasl_password else ""
    return kinds[settings.sasl_mechanism](settings.sasl_username or "", password, ssl_context=ctx,
                                          use_ssl=ctx is not None)


def build_broker(settings: KafkaSettings, *, graceful_timeout_s: float = 15.0) -> KafkaBroker:
    """A KafkaBroker whose producer waits for all in-sync replicas (acks=all)."""
    return KafkaBroker(
        settings.bootstrap,
        acks="all",
        enable_idempotence=settings.enable_idempotence,
        linger_ms=settings.linger_ms,
        max_batch_size=settings.max_batch_size,
        compression_type=settings.compression,  # type: ignore[arg-type]
        security=security(settings),
        client_id="ebrain-cloud",
        graceful_timeout=graceful_timeout_s,
        # FastStream logs every message at INFO; our handler logs one structured event per message.
        log_level=logging.DEBUG,
    )


def subscribe(
    broker: KafkaBroker, handler: UplinkHandler, settings: CloudSettings, listener: ConsumerRebalanceListener
) -> None:
    """Consume the uplink topics in the cloud consumer group, committing each offset after its reply.

    One consumer reads both topics, in order per partition. With `consumers_per_topic` > 1 each topic gets
    that many consumers (FastStream commits in order only for a single topic per concurrent subscriber);
    every consumer is a group member, and each join costs the group a rebalance.
    """
    groups = [UPLINK_TOPICS] if settings.consumers_per_topic == 1 else [(t,) for t in UPLINK_TOPICS]
    for topics in groups:
        subscriber = broker.subscriber(
            *topics,
            group_id=settings.group_id,
            auto_offset_reset=settings.auto_offset_reset,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            ack_policy=AckPolicy.NACK_ON_ERROR,
            max_workers=settings.consumers_per_topic,
            listener=listener,
            no_reply=True,
            decoder=raw_body,
        )
        subscriber(_on_message(handler))
    # The retry topic has its own group and consumer: a retry held until its not-before time must not
    # stall fresh uplink messages.
    retries = broker.subscriber(
        RETRY_TOPIC,
        group_id=f"{settings.group_id}-retry",
        auto_offset_reset="earliest",
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        listener=listener,
        no_reply=True,
        decoder=raw_body,
    )
    retries(_on_message(handler))


def raw_body(message: Any) -> bytes:
    """FastStream decoder that leaves the body as bytes: the handler decodes (and dead-letters) it itself.

    The default decoder json-parses every body first; one nested past the recursion limit raised RecursionError
    there, before the handler, and NACK_ON_ERROR redelivered it forever: a poison pill that stalled its
    partition (found by tests/test_fuzz_workers.py).
    """
    body: bytes = message.body
    return body


def _on_message(handler: UplinkHandler) -> Callable[[Any], Awaitable[None]]:
    kinds: dict[str, str | None] = dict(zip(UPLINK_TOPICS, UPLINK_KINDS, strict=True))

    async def on_uplink(message: KafkaMessage) -> None:
        record = message.raw_message
        assert not isinstance(record, tuple), "batch subscribers are not used here"
        headers = {k: v.decode(errors="replace") for k, v in (record.headers or ()) if isinstance(v, bytes)}
        # The raw bytes, not FastStream's decoded body: invalid input must reach the dead-letter path.
        await handler.handle(message.body, topic=record.topic, kind=kinds.get(record.topic), key=record.key,
                             headers=headers)

    return on_uplink
