"""What the gateway hands to Kafka: a plain record, so the core never sees a Kafka client."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """One Kafka record: topic, partition key (`tenant/device`), value and CloudEvents binary headers."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
