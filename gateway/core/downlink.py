"""Downlink rules: which Kafka records become MQTT messages to which device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ebrain.observability import trace
from schemas import Envelope, InvalidMessage, Reason, decode, encode
from schemas.topics import mqtt_downlink, parse_kafka_downlink


@dataclass(frozen=True, slots=True)
class MqttOut:
    """One MQTT message to publish, with the envelope it carries (for logs) and its MQTT v5 user properties."""

    topic: str
    payload: bytes
    envelope: Envelope[Any]
    user_properties: tuple[tuple[str, str], ...] = ()
    traceparent_in: str | None = None  # the traceparent it came with (the parent span), for logs

    @property
    def traceparent(self) -> str | None:
        """The W3C traceparent this message carries (the gateway's downlink span), if any."""
        return trace.from_properties(self.user_properties)


def downlink_message(
    kafka_topic: str, value: bytes | None, *, max_bytes: int, traceparent_in: str | bytes | None = None
) -> MqttOut:
    """The MQTT message for a Kafka downlink record, or InvalidMessage.

    The device comes from the envelope, the kind from the Kafka topic, and the two must agree. The message
    carries a `traceparent` user property: the gateway's span, a child of `traceparent_in` (the record's
    Kafka header) when that belongs to the envelope's trace, else a fresh span of it.
    """
    kind = parse_kafka_downlink(kafka_topic)
    envelope = decode(value or b"", max_bytes=max_bytes)
    if kind != envelope.data.KIND:
        raise InvalidMessage(Reason.TOPIC_MISMATCH, f"{envelope.type} on Kafka topic {kafka_topic!r}")
    parent = traceparent_in.decode("ascii", "replace") if isinstance(traceparent_in, bytes) else traceparent_in
    return MqttOut(
        topic=mqtt_downlink(envelope.tenant, envelope.device, kind),
        payload=encode(envelope, max_bytes=max_bytes),
        envelope=envelope,
        user_properties=((trace.HEADER, trace.next_hop(envelope.trace_id, parent)),),
        traceparent_in=parent,
    )
