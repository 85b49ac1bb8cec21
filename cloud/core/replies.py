"""Turn an incoming Escalation or InferenceRequest envelope plus an outcome into the reply envelope.

The reply keeps the tenant, device and trace id (one trace end to end) and gets a fresh message id.
"""

from __future__ import annotations

import math
from typing import Any

from ebrain.inference.ports import Completion
from schemas import Envelope, Escalation, InferenceRequest, InferenceResult, InvalidMessage, Reason, make
from schemas.payloads import Route, Status

ROUTE: Route = "cloud"
SOURCE = "ebrain://cloud"
_SHORT = 512  # schemas.payloads.ShortText


def request_of(envelope: Envelope[Any]) -> InferenceRequest:
    """The request an envelope asks the cloud to answer; InvalidMessage for payloads it does not serve."""
    data = envelope.data
    if isinstance(data, Escalation):
        return data.request
    if isinstance(data, InferenceRequest):
        return data
    raise InvalidMessage(Reason.TOPIC_MISMATCH, f"cloud does not answer {envelope.type!r}")


def expect_kind(envelope: Envelope[Any], kind: str) -> None:
    """Refuse (InvalidMessage TOPIC_MISMATCH) an envelope whose payload kind is not the topic's kind."""
    actual = type(envelope.data).KIND
    if actual != kind:
        raise InvalidMessage(Reason.TOPIC_MISMATCH, f"{actual!r} payload on a {kind!r} topic")


def why_cloud(envelope: Envelope[Any]) -> str:
    """The reason this route served the request: the edge's escalation reason, or a direct request."""
    data = envelope.data
    if isinstance(data, Escalation):
        return f"escalated: {data.reason}"[:_SHORT]
    return "requested"


def confidence(completion: Completion) -> float | None:
    """Geometric-mean token probability, exp(mean log-prob), in [0, 1]; None when the engine cannot say."""
    if completion.mean_logprob is None or math.isnan(completion.mean_logprob):
        return None
    return min(1.0, max(0.0, math.exp(min(0.0, completion.mean_logprob))))


def _reply(envelope: Envelope[Any], result: InferenceResult) -> Envelope[InferenceResult]:
    return make(result, tenant=envelope.tenant, device=envelope.device, source=SOURCE,
                trace_id=envelope.trace_id)


def answered(
    envelope: Envelope[Any],
    completion: Completion,
    *,
    latency_ms: float | None = None,
    route: Route = ROUTE,
    reason: str | None = None,
    scores: dict[str, float] | None = None,
) -> Envelope[InferenceResult]:
    """An `ok` result for `envelope` from `completion`; latency defaults to the engine's own.

    `reason` (default: why the cloud was asked) and `scores` say which route served it and why.
    """
    result = InferenceResult(
        request_id=request_of(envelope).request_id,
        route=route,
        status="ok",
        text=completion.text,
        model_id=completion.model_id[:_SHORT],
        model_version=completion.model_version[:_SHORT],
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        latency_ms=max(0.0, completion.latency_ms if latency_ms is None else latency_ms),
        confidence=confidence(completion),
        reason=(reason if reason is not None else why_cloud(envelope))[:_SHORT],
        scores=_scores(scores),
    )
    return _reply(envelope, result)


def failed(
    envelope: Envelope[Any],
    reason: str,
    *,
    model_id: str,
    model_version: str,
    latency_ms: float,
    status: Status = "failed",
    scores: dict[str, float] | None = None,
) -> Envelope[InferenceResult]:
    """A result without an answer, carrying why: `failed` (given up), `deferred` (queued for a retry, the
    answer follows later with the same request id) or `rejected` (over a rate limit). The device learns the
    outcome instead of waiting forever."""
    result = InferenceResult(
        request_id=request_of(envelope).request_id,
        route=ROUTE,
        status=status,
        model_id=model_id[:_SHORT],
        model_version=model_version[:_SHORT],
        latency_ms=max(0.0, latency_ms),
        reason=reason[:_SHORT],
        scores=_scores(scores),
    )
    return _reply(envelope, result)


def _scores(scores: dict[str, float] | None) -> dict[str, float]:
    # The schema caps the map at 32 entries of short keys; keep the first ones rather than refuse the result.
    return {k[:_SHORT]: float(v) for k, v in list((scores or {}).items())[:32]}
