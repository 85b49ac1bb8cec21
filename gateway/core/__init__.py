"""The gateway's pure core: validation and mapping between MQTT and Kafka. No I/O, no broker clients."""

from gateway.core.backoff import Backoff
from gateway.core.downlink import MqttOut, downlink_message
from gateway.core.records import KafkaRecord
from gateway.core.uplink import COMPONENT, dead_letter_record, traceparent, uplink_record, validate_uplink

__all__ = [
    "COMPONENT",
    "Backoff",
    "KafkaRecord",
    "MqttOut",
    "dead_letter_record",
    "downlink_message",
    "traceparent",
    "uplink_record",
    "validate_uplink",
]
