"""From decoded envelopes to raw (not yet redacted) training records, or the reason there is none."""

from __future__ import annotations

from typing import Any

from cloud.ingest.core.join import JoinKey, Pair
from cloud.ingest.core.records import Record, record_id
from schemas import Envelope, Escalation, InferenceResult

TEACHER_ROUTES = frozenset({"cloud", "cache"})


def join_key(envelope: Envelope[Any]) -> JoinKey:
    """tenant, device and request id: what ties an escalation to its answer."""
    data = envelope.data
    request_id = data.request.request_id if isinstance(data, Escalation) else data.request_id
    return envelope.tenant, envelope.device, request_id


def from_local(envelope: Envelope[Any], seq: int = 0) -> Record | str:
    """A record from an edge-answered result, or why not ('not_ok', 'no_prompt', 'not_local')."""
    result = envelope.data
    if not isinstance(result, InferenceResult) or result.route != "local":
        return "not_local"
    if result.status != "ok":
        return "not_ok"
    prompt = result.prompt
    if not prompt:
        return "no_prompt"
    return Record(
        record_id=record_id(envelope.tenant, envelope.device, result.request_id, "local"),
        tenant=envelope.tenant, device=envelope.device, kind="local", request_id=result.request_id,
        prompt=prompt, answer=result.text, created=envelope.time, model_id=result.model_id,
        model_version=result.model_version, source_ids=(envelope.id,), seq=seq,
    )


def from_pair(pair: Pair, seq: int = 0) -> Record | str:
    """A distillation record: the prompt and edge draft of the escalation, the teacher's answer."""
    escalation = pair.escalation.data
    answer = pair.answer.data
    if not isinstance(escalation, Escalation) or not isinstance(answer, InferenceResult):
        return "bad_pair"
    if answer.status != "ok":
        return "answer_not_ok"
    env = pair.escalation
    request_id = escalation.request.request_id
    return Record(
        record_id=record_id(env.tenant, env.device, request_id, "distill"),
        tenant=env.tenant, device=env.device, kind="distill", request_id=request_id,
        prompt=escalation.request.prompt, answer=answer.text, created=pair.answer.time,
        draft=escalation.draft, model_id=answer.model_id, model_version=answer.model_version,
        draft_model_id=escalation.draft_model_id, source_ids=(env.id, pair.answer.id), seq=seq,
    )


def is_teacher_answer(envelope: Envelope[Any]) -> bool:
    """A cloud (or cache) result: the answer half of a distillation pair."""
    return isinstance(envelope.data, InferenceResult) and envelope.data.route in TEACHER_ROUTES
