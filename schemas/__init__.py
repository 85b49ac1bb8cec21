"""Versioned messages shared by every part of enterprise-brain. No I/O lives here."""

from schemas.codec import MAX_MESSAGE_BYTES, decode, encode, from_dict, parse_json
from schemas.deadletter import dead_letter
from schemas.envelope import Envelope, make
from schemas.errors import InvalidMessage, Reason
from schemas.ids import new_id, new_trace_id, valid_name
from schemas.payloads import (
    BY_KIND,
    BY_TYPE,
    PAYLOAD_TYPES,
    DeadLetter,
    Escalation,
    Feedback,
    InferenceRequest,
    InferenceResult,
    ModelUpdate,
    Payload,
    Telemetry,
)

__all__ = [
    "BY_KIND",
    "BY_TYPE",
    "MAX_MESSAGE_BYTES",
    "PAYLOAD_TYPES",
    "DeadLetter",
    "Envelope",
    "Escalation",
    "Feedback",
    "InferenceRequest",
    "InferenceResult",
    "InvalidMessage",
    "ModelUpdate",
    "Payload",
    "Reason",
    "Telemetry",
    "dead_letter",
    "decode",
    "encode",
    "from_dict",
    "make",
    "new_id",
    "new_trace_id",
    "parse_json",
    "valid_name",
]
