"""What a device hears back when the gateway refuses its message before Kafka (rate limits)."""

from __future__ import annotations

from typing import Any

from ebrain.observability import trace
from gateway.core.downlink import MqttOut
from gateway.core.ratelimit import Scope
from schemas import Envelope, Escalation, InferenceRequest, InferenceResult, Reason, encode, make
from schemas.topics import mqtt_downlink

REJECT_MODEL = "gateway"


def _request_id(envelope: Envelope[Any]) -> str | None:
    data = envelope.data
    if isinstance(data, InferenceRequest):
        return data.request_id
    if isinstance(data, Escalation):
        return data.request.request_id
    return None


def reject_reply(
    envelope: Envelope[Any], scope: Scope, *, source: str = "ebrain://gateway", traceparent_in: str | None = None
) -> MqttOut | None:
    """A `rejected` InferenceResult for a refused request or escalation, on the device's downlink; its
    `traceparent` user property is a child of the device's (`traceparent_in`), so the refusal is in the trace.

    None for kinds that have no request to answer (telemetry, feedback, results): the caller counts those.
    """
    request_id = _request_id(envelope)
    if request_id is None:
        return None
    result = InferenceResult(
        request_id=request_id,
        route="cloud",
        status="rejected",
        model_id=REJECT_MODEL,
        model_version="-",
        latency_ms=0.0,
        reason=f"{Reason.RATE_LIMITED.value}:{scope.value}",
    )
    reply = make(result, tenant=envelope.tenant, device=envelope.device, source=source, trace_id=envelope.trace_id)
    return MqttOut(
        topic=mqtt_downlink(envelope.tenant, envelope.device, InferenceResult.KIND),
        payload=encode(reply, max_bytes=2**31),
        envelope=reply,
        user_properties=((trace.HEADER, trace.next_hop(envelope.trace_id, traceparent_in)),),
        traceparent_in=traceparent_in,
    )
