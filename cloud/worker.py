"""The Kafka adapter: FastStream subscribers on the uplink topics, replies and dead letters out.

Offsets are committed only after the reply (or dead letter) was acknowledged by all in-sync replicas
(`AckPolicy.NACK_ON_ERROR` with acks=all): a crash or a failed publish means redelivery, never loss.
Redeliveries are recognised by envelope id (`RecentIds`), so at-least-once does not answer twice.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from cloud import metrics
from cloud.core import RecentIds, expect_kind
from cloud.responder import Responder
from cloud.settings import CloudSettings
from ebrain.config import KafkaSettings
from schemas import Envelope, Escalation, InferenceRequest, InvalidMessage, dead_letter, decode, encode
from schemas.topics import KAFKA_DEADLETTER, kafka_downlink, kafka_uplink

log = logging.getLogger(__name__)

COMPONENT = "cloud"
RESULT_TOPIC = kafka_downlink("result")
UPLINK_KINDS = (Escalation.KIND, InferenceRequest.KIND)
UPLINK_TOPICS = tuple(kafka_uplink(kind) for kind in UPLINK_KINDS)
TOPICS = [*UPLINK_TOPICS, RESULT_TOPIC, KAFKA_DEADLETTER]


class Sink(Protocol):
    """Where envelopes go out: returns once the broker acknowledged the write."""

    async def send(self, topic: str, envelope: Envelope[Any]) -> None: ...


class BrokerSink:
    """Publishes envelopes through a FastStream KafkaBroker, keyed `tenant/device`, waiting for the ack."""

    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def send(self, topic: str, envelope: Envelope[Any]) -> None:
        headers = {"ce_specversion": envelope.specversion, "ce_id": envelope.id, "ce_type": envelope.type,
                   "ce_source": envelope.source, "ebrain_trace_id": envelope.trace_id}
        await self._broker.publish(encode(envelope), topic, key=envelope.key.encode(), headers=headers)


class UplinkHandler:
    """One uplink message: decode, refuse or dedup, answer, send. Raises only when sending failed."""

    def __init__(self, responder: Responder, sink: Sink, dedup: RecentIds) -> None:
        self._responder = responder
        self._sink = sink
        self._dedup = dedup

    async def handle(self, raw: bytes, *, topic: str, kind: str, key: bytes | None = None) -> None:
        """Process `raw` from `topic`; a raised exception means "not done, redeliver"."""
        try:
            envelope = decode(raw)
            expect_kind(envelope, kind)
        except InvalidMessage as exc:
            await self._dead_letter(raw, exc, topic=topic, kind=kind, key=key)
            return
        ctx = {"msg_id": envelope.id, "tenant": envelope.tenant, "device": envelope.device,
               "trace_id": envelope.trace_id, "kind": kind}
        if not self._dedup.claim(envelope.id):
            metrics.DUPLICATES.inc()
            metrics.REQUESTS.labels(kind, "duplicate").inc()
            log.info("duplicate skipped", extra=ctx)
            return
        try:
            reply = await self._responder.respond(envelope)
            await self._sink.send(RESULT_TOPIC, reply)
        except BaseException:
            # Not answered: let the redelivery through the dedup set.
            self._dedup.release(envelope.id)
            raise
        metrics.REQUESTS.labels(kind, reply.data.status).inc()
        log.info("answered", extra={**ctx, "reply_id": reply.id, "status": reply.data.status,
                                    "reason": reply.data.reason,
                                    "latency_ms": round(reply.data.latency_ms, 1)})

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


def _key_parts(key: bytes | None) -> tuple[str | None, str | None]:
    """Tenant and device from a `tenant/device` Kafka key, if it is one (dead_letter validates them)."""
    try:
        tenant, device = (key or b"").decode().split("/")
    except ValueError:  # UnicodeDecodeError is a ValueError too
        return None, None
    return tenant, device


class AssignmentWatch(ConsumerRebalanceListener):  # type: ignore[misc]
    """Sets `ready` once every watched topic has had partitions assigned to this process."""

    def __init__(self, topics: Iterable[str], ready: asyncio.Event) -> None:
        self._waiting = set(topics)
        self._ready = ready

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Nothing to flush: offsets are committed per message after its reply."""

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Tick off the topics that got partitions."""
        self._waiting -= {tp.topic for tp in assigned}
        if not self._waiting:
            self._ready.set()


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
        )
        subscriber(_on_message(handler))


def _on_message(handler: UplinkHandler) -> Callable[[Any], Awaitable[None]]:
    kinds = dict(zip(UPLINK_TOPICS, UPLINK_KINDS, strict=True))

    async def on_uplink(message: KafkaMessage) -> None:
        record = message.raw_message
        assert not isinstance(record, tuple), "batch subscribers are not used here"
        # The raw bytes, not FastStream's decoded body: invalid input must reach the dead-letter path.
        await handler.handle(message.body, topic=record.topic, kind=kinds[record.topic], key=record.key)

    return on_uplink
