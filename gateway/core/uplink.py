"""Uplink rules: which MQTT messages become Kafka records, and how refused ones become dead letters."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from ebrain.observability import trace
from gateway.core.records import KafkaRecord
from schemas import Envelope, InvalidMessage, Reason, dead_letter, decode, encode
from schemas.topics import KAFKA_DEADLETTER, UPLINK_KINDS, TopicAddress, kafka_uplink, parse_mqtt

COMPONENT = "gateway"


def _address(topic: str) -> TopicAddress:
    address = parse_mqtt(topic)
    if address.downlink or address.kind not in UPLINK_KINDS:
        raise InvalidMessage(Reason.BAD_TOPIC, f"not an uplink topic: {topic[:200]!r}")
    return address


def validate_uplink(
    topic: str, raw: bytes, *, max_bytes: int, tenants: Collection[str] | None = None
) -> Envelope[Any]:
    """The envelope a device sent on `topic`, or InvalidMessage (size, JSON, schema, topic mismatch, tenant).

    The topic is the device's authenticated identity, so the envelope may not claim another tenant,
    device or kind than the topic it arrived on. With `tenants` (the registry), any other tenant is
    refused as unknown_tenant before the payload is even parsed.
    """
    address = _address(topic)
    if tenants is not None and address.tenant not in tenants:
        raise InvalidMessage(Reason.UNKNOWN_TENANT, f"tenant {address.tenant!r} is not registered")
    envelope = decode(raw, max_bytes=max_bytes)
    if address.kind != envelope.data.KIND:
        raise InvalidMessage(Reason.TOPIC_MISMATCH, f"{envelope.type} published on kind {address.kind!r}")
    if (envelope.tenant, envelope.device) != (address.tenant, address.device):
        raise InvalidMessage(
            Reason.TOPIC_MISMATCH,
            f"envelope {envelope.tenant}/{envelope.device} on topic of {address.tenant}/{address.device}",
        )
    return envelope


def traceparent(trace_id: str, span_id: str | None = None) -> str:
    """W3C traceparent for a new span of `trace_id` (sampled)."""
    return trace.SpanContext(trace_id, span_id or trace.new_span_id()).header()


def _headers(envelope: Envelope[Any], traceparent_out: str) -> tuple[tuple[str, bytes], ...]:
    return (
        ("ce_specversion", envelope.specversion.encode()),
        ("ce_id", envelope.id.encode()),
        ("ce_type", envelope.type.encode()),
        ("ce_source", envelope.source.encode()),
        ("content-type", envelope.datacontenttype.encode()),
        ("tenant", envelope.tenant.encode()),
        ("device", envelope.device.encode()),
        (trace.HEADER, traceparent_out.encode()),
    )


def _is_current(raw: bytes, envelope: Envelope[Any]) -> bool:
    # Compact JSON of the current version (what devices using schemas.encode send). A quote inside a JSON
    # string is escaped, so a string value cannot fake this; anything else falls back to re-encoding.
    return b'"schema_version":%d' % envelope.data.VERSION in raw


def uplink_record(
    envelope: Envelope[Any],
    *,
    span_id: str | None = None,
    raw: bytes | None = None,
    traceparent_in: str | bytes | None = None,
) -> KafkaRecord:
    """The Kafka record for a valid envelope: topic `ebrain.<kind>`, key `tenant/device`, current version.

    `raw`, the validated bytes the envelope came from, is forwarded as is when it already is the current
    schema version (saves a serialisation per message); otherwise the envelope is re-encoded (upcast).
    The `traceparent` header is the gateway's span: a child of `traceparent_in` (the device's MQTT user
    property) when that belongs to the envelope's trace, else a fresh span of it; `span_id` pins the span id.
    """
    value = raw if raw is not None and _is_current(raw, envelope) else encode(envelope, max_bytes=2**31)
    if span_id is not None:
        out = traceparent(envelope.trace_id, span_id)
    else:
        out = trace.next_hop(envelope.trace_id, traceparent_in)
    return KafkaRecord(
        topic=kafka_uplink(envelope.data.KIND),
        key=envelope.key.encode(),
        value=value,
        headers=_headers(envelope, out),
    )


def dead_letter_record(
    source_topic: str,
    raw: bytes,
    error: InvalidMessage,
    *,
    component: str = COMPONENT,
    tenant: str | None = None,
    device: str | None = None,
) -> KafkaRecord:
    """The dead-letter record for refused bytes; tenant/device default to what the MQTT topic names."""
    if tenant is None and device is None:
        try:
            address = parse_mqtt(source_topic)
            tenant, device = address.tenant, address.device
        except InvalidMessage:
            pass
    envelope = dead_letter(
        raw,  # schemas keeps a bounded prefix and the true size
        error,
        source_topic=source_topic,
        component=component,
        tenant=tenant,
        device=device,
    )
    return KafkaRecord(
        topic=KAFKA_DEADLETTER,
        key=envelope.key.encode(),
        value=encode(envelope, max_bytes=2**31),
        headers=(*_headers(envelope, traceparent(envelope.trace_id)), ("reason", error.reason.value.encode())),
    )
