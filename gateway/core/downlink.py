"""Downlink rules: which Kafka records become MQTT messages to which device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas import Envelope, InvalidMessage, Reason, decode, encode
from schemas.topics import mqtt_downlink, parse_kafka_downlink


@dataclass(frozen=True, slots=True)
class MqttOut:
    """One MQTT message to publish, with the envelope it carries (for logs)."""

    topic: str
    payload: bytes
    envelope: Envelope[Any]


def downlink_message(kafka_topic: str, value: bytes | None, *, max_bytes: int) -> MqttOut:
    """The MQTT message for a Kafka downlink record, or InvalidMessage.

    The device comes from the envelope, the kind from the Kafka topic, and the two must agree.
    """
    kind = parse_kafka_downlink(kafka_topic)
    envelope = decode(value or b"", max_bytes=max_bytes)
    if kind != envelope.data.KIND:
        raise InvalidMessage(Reason.TOPIC_MISMATCH, f"{envelope.type} on Kafka topic {kafka_topic!r}")
    return MqttOut(
        topic=mqtt_downlink(envelope.tenant, envelope.device, kind),
        payload=encode(envelope, max_bytes=max_bytes),
        envelope=envelope,
    )
