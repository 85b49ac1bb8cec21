"""Every MQTT and Kafka topic name lives here, with the parsers that refuse forged ones.

MQTT uplink:   ebrain/{tenant}/{device}/{kind}          (device -> cloud)
MQTT downlink: ebrain/{tenant}/{device}/down/{kind}     (cloud -> device)
Kafka uplink:  ebrain.{kind}                            (key: tenant/device)
Kafka downlink: ebrain.down.{kind}                      (key: tenant/device; the gateway fans out to MQTT)
Dead letters:  ebrain.deadletter
Cloud retries: ebrain.retry (the original request envelope; headers ebrain_not_before_ms, ebrain_attempt)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from schemas.errors import InvalidMessage, Reason
from schemas.ids import valid_name
from schemas.payloads import (
    DeadLetter,
    Escalation,
    Feedback,
    InferenceRequest,
    InferenceResult,
    ModelUpdate,
    Telemetry,
)

ROOT = "ebrain"
DOWN = "down"
UPLINK_KINDS: frozenset[str] = frozenset(
    {InferenceRequest.KIND, InferenceResult.KIND, Escalation.KIND, Telemetry.KIND, Feedback.KIND}
)
DOWNLINK_KINDS: frozenset[str] = frozenset({InferenceResult.KIND, ModelUpdate.KIND})
KAFKA_DEADLETTER = f"{ROOT}.{DeadLetter.KIND}"
# Requests the cloud deferred because every backend was saturated; consumed by the cloud workers only.
KAFKA_RETRY = f"{ROOT}.retry"


@dataclass(frozen=True, slots=True)
class TopicAddress:
    """Who a topic belongs to and what kind of message it carries."""

    tenant: str
    device: str
    kind: str
    downlink: bool = False


def mqtt_uplink(tenant: str, device: str, kind: str) -> str:
    return f"{ROOT}/{tenant}/{device}/{kind}"


def mqtt_downlink(tenant: str, device: str, kind: str) -> str:
    return f"{ROOT}/{tenant}/{device}/{DOWN}/{kind}"


def mqtt_downlink_filter(tenant: str, device: str) -> str:
    """What one device subscribes to: everything addressed to it and nothing else."""
    return f"{ROOT}/{tenant}/{device}/{DOWN}/+"


def mqtt_uplink_filter(share_group: str | None = None) -> str:
    """What the gateway subscribes to; with a share group, replicas split the load (MQTT v5)."""
    base = f"{ROOT}/+/+/+"
    return f"$share/{share_group}/{base}" if share_group else base


def kafka_uplink(kind: str) -> str:
    return f"{ROOT}.{kind}"


def kafka_downlink(kind: str) -> str:
    return f"{ROOT}.{DOWN}.{kind}"


def all_kafka_topics() -> list[str]:
    """Every Kafka topic the system uses, for creating them up front."""
    up = [kafka_uplink(k) for k in sorted(UPLINK_KINDS)]
    down = [kafka_downlink(k) for k in sorted(DOWNLINK_KINDS)]
    return [*up, *down, KAFKA_DEADLETTER]


@functools.lru_cache(maxsize=16_384)  # a fleet's topics repeat on every message; bounded, addresses are frozen
def parse_mqtt(topic: str) -> TopicAddress:
    """Parse an uplink or downlink MQTT topic; InvalidMessage(BAD_TOPIC) for anything else."""
    parts = topic.split("/")
    if len(parts) == 4 and parts[0] == ROOT and parts[3] in UPLINK_KINDS:
        address = TopicAddress(parts[1], parts[2], parts[3])
    elif len(parts) == 5 and parts[0] == ROOT and parts[3] == DOWN and parts[4] in DOWNLINK_KINDS:
        address = TopicAddress(parts[1], parts[2], parts[4], downlink=True)
    else:
        raise InvalidMessage(Reason.BAD_TOPIC, f"not an ebrain topic: {topic[:200]!r}")
    if not (valid_name(address.tenant) and valid_name(address.device)):
        raise InvalidMessage(Reason.BAD_TOPIC, f"bad tenant or device in {topic[:200]!r}")
    return address


def parse_kafka_downlink(topic: str) -> str:
    """The kind carried by a Kafka downlink topic, or InvalidMessage(BAD_TOPIC)."""
    prefix = f"{ROOT}.{DOWN}."
    kind = topic.removeprefix(prefix)
    if not topic.startswith(prefix) or kind not in DOWNLINK_KINDS:
        raise InvalidMessage(Reason.BAD_TOPIC, f"not a downlink topic: {topic!r}")
    return kind
