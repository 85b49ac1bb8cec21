"""Unit tests of the cloud's pure core and of the engine responder (no broker)."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud.core import (
    RecentIds,
    answered,
    backoff_s,
    deadline_at,
    expect_kind,
    failed,
    remaining_s,
    request_of,
)
from cloud.responder import EngineResponder
from ebrain.inference.ports import Completion, EngineOverloaded, EngineUnavailable
from schemas import (
    Envelope,
    Escalation,
    InferenceRequest,
    InvalidMessage,
    Reason,
    Telemetry,
    decode,
    encode,
    make,
)


def _request(**kw: object) -> InferenceRequest:
    return InferenceRequest(request_id="r-1", prompt="What is 2+2?", **kw)


def _escalation(**kw: object) -> Envelope[Escalation]:
    esc = Escalation(request=_request(**kw), reason="low confidence 0.31", draft="maybe 5",
                     draft_model_id="smollm2", draft_model_version="v1")
    return make(esc, tenant="acme", device="dev-1")


def _completion(**kw: object) -> Completion:
    values: dict[str, object] = {"text": "4", "prompt_tokens": 7, "completion_tokens": 1,
                                 "mean_logprob": -0.1, "finish_reason": "stop", "latency_ms": 12.5,
                                 "model_id": "big", "model_version": "2"}
    values.update(kw)
    return Completion(**values)  # type: ignore[arg-type]


class TestReplies:
    def test_answer_keeps_tenant_device_trace_and_gets_a_new_id(self) -> None:
        env = _escalation()
        reply = answered(env, _completion())
        assert (reply.tenant, reply.device, reply.trace_id) == (env.tenant, env.device, env.trace_id)
        assert reply.id != env.id
        assert reply.key == "acme/dev-1"
        assert reply.source == "ebrain://cloud"

    def test_answer_carries_the_completion(self) -> None:
        result = answered(_escalation(), _completion(), latency_ms=40.0).data
        assert result.request_id == "r-1"
        assert (result.route, result.status, result.text) == ("cloud", "ok", "4")
        assert (result.model_id, result.model_version) == ("big", "2")
        assert (result.prompt_tokens, result.completion_tokens, result.latency_ms) == (7, 1, 40.0)
        assert result.confidence == pytest.approx(math.exp(-0.1))
        assert result.reason == "escalated: low confidence 0.31"

    def test_direct_request_reason_and_engine_latency(self) -> None:
        env = make(_request(), tenant="acme", device="dev-1")
        result = answered(env, _completion(mean_logprob=None)).data
        assert result.reason == "requested"
        assert result.latency_ms == 12.5
        assert result.confidence is None

    def test_reply_round_trips_through_the_codec(self) -> None:
        reply = answered(_escalation(), _completion())
        assert decode(encode(reply)) == reply

    def test_failed_result_carries_the_reason(self) -> None:
        env = _escalation()
        reply = failed(env, "EngineOverloaded: busy " + "x" * 600, model_id="big", model_version="2",
                       latency_ms=5.0)
        assert reply.data.status == "failed"
        assert reply.data.route == "cloud"
        assert reply.data.text == ""
        assert reply.data.reason.startswith("EngineOverloaded: busy")
        assert len(reply.data.reason) == 512
        assert reply.trace_id == env.trace_id

    def test_refuses_payloads_it_does_not_serve(self) -> None:
        env = make(Telemetry(model_id="m", model_version="1", uptime_s=1.0), tenant="acme", device="d")
        with pytest.raises(InvalidMessage) as exc:
            request_of(env)
        assert exc.value.reason is Reason.TOPIC_MISMATCH

    def test_expect_kind(self) -> None:
        expect_kind(_escalation(), "escalation")
        with pytest.raises(InvalidMessage) as exc:
            expect_kind(_escalation(), "request")
        assert exc.value.reason is Reason.TOPIC_MISMATCH


class TestDeadlines:
    def test_request_deadline_wins_over_default(self) -> None:
        env = _escalation(deadline_ms=500)
        assert deadline_at(env, 30_000) == env.time + timedelta(milliseconds=500)
        assert remaining_s(env, 30_000, env.time + timedelta(seconds=1)) == pytest.approx(-0.5)

    def test_default_applies_without_one(self) -> None:
        env = _escalation()
        assert remaining_s(env, 2_000, env.time) == pytest.approx(2.0)

    @given(attempt=st.integers(0, 64), jitter=st.floats(0.0, 1.0))
    def test_backoff_is_bounded_by_the_cap(self, attempt: int, jitter: float) -> None:
        delay = backoff_s(attempt, base_s=0.05, cap_s=2.0, jitter=jitter)
        assert 0.0 <= delay <= 2.0

    def test_backoff_grows_then_caps(self) -> None:
        assert [backoff_s(a, base_s=0.1, cap_s=0.5, jitter=1.0) for a in range(4)] == [0.1, 0.2, 0.4, 0.5]
        with pytest.raises(ValueError, match="jitter"):
            backoff_s(0, base_s=0.1, cap_s=1.0, jitter=1.5)


class TestRecentIds:
    def test_second_claim_is_a_duplicate(self) -> None:
        ids = RecentIds(4)
        assert ids.claim("a")
        assert not ids.claim("a")
        assert ids.duplicates == 1

    def test_bound_evicts_the_least_recently_seen(self) -> None:
        ids = RecentIds(2)
        ids.claim("a")
        ids.claim("b")
        ids.claim("a")  # touch: "b" is now the oldest
        ids.claim("c")
        assert len(ids) == 2
        assert "b" not in ids
        assert {"a", "c"} <= {i for i in ("a", "b", "c") if i in ids}
        assert ids.evicted == 1

    @given(st.lists(st.text(min_size=1, max_size=3), max_size=200), st.integers(1, 16))
    def test_never_exceeds_capacity(self, seen: list[str], capacity: int) -> None:
        ids = RecentIds(capacity)
        for message_id in seen:
            ids.claim(message_id)
        assert len(ids) <= capacity

    def test_release_lets_a_redelivery_through(self) -> None:
        ids = RecentIds(2)
        ids.claim("a")
        ids.release("a")
        ids.release("never-seen")
        assert ids.claim("a")

    def test_capacity_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="capacity"):
            RecentIds(0)


class ScriptedEngine:
    """Raises the scripted errors in order, then echoes the prompt."""

    model_id = "scripted"
    model_version = "1"

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def complete(self, request: InferenceRequest) -> Completion:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return _completion(text=request.prompt, model_id=self.model_id, model_version=self.model_version)

    async def aclose(self) -> None:
        return None


async def _no_sleep(_: float) -> None:
    return None


def _responder(engine: ScriptedEngine, **kw: object) -> EngineResponder:
    options: dict[str, object] = {"sleep": _no_sleep, **kw}
    return EngineResponder(engine, max_concurrency=1, default_deadline_ms=10_000, jitter=lambda: 1.0,
                           **options)  # type: ignore[arg-type]


class TestEngineResponder:
    async def test_retries_overload_then_answers(self) -> None:
        engine = ScriptedEngine(EngineOverloaded("full"), EngineUnavailable("restarting"))
        reply = await _responder(engine).respond(_escalation())
        assert reply.data.status == "ok"
        assert reply.data.text == "What is 2+2?"
        assert engine.calls == 3

    async def test_permanent_error_fails_without_retry(self) -> None:
        engine = ScriptedEngine(RuntimeError("boom"))
        reply = await _responder(engine).respond(_escalation())
        assert reply.data.status == "failed"
        assert reply.data.reason == "engine error: RuntimeError: boom"
        assert (reply.data.model_id, engine.calls) == ("scripted", 1)

    async def test_gives_up_at_the_deadline(self) -> None:
        engine = ScriptedEngine(*[EngineOverloaded("full")] * 1000)
        responder = _responder(engine, retry_base_s=0.01, retry_cap_s=0.02, sleep=asyncio.sleep)
        # 500 ms, not 100: on a loaded 2-core machine the first attempt alone can take 100 ms.
        reply = await responder.respond(_escalation(deadline_ms=500))
        assert reply.data.status == "failed"
        assert reply.data.reason.startswith("EngineOverloaded: full (deadline reached after")
        assert engine.calls < 1000

    async def test_expired_request_is_not_run(self) -> None:
        engine = ScriptedEngine()
        past = datetime.now(UTC) - timedelta(seconds=5)
        old = _escalation(deadline_ms=10).model_copy(update={"time": past})
        reply = await _responder(engine).respond(old)
        assert reply.data.status == "failed"
        assert "deadline exceeded" in reply.data.reason
        assert engine.calls == 0


class OversizedEngine(ScriptedEngine):
    async def complete(self, request: InferenceRequest) -> Completion:
        return _completion(text="x" * 40_000)


async def test_engine_output_that_breaks_the_schema_gives_a_failed_result() -> None:
    reply = await _responder(OversizedEngine()).respond(_escalation())
    assert reply.data.status == "failed"
    assert reply.data.reason == "invalid engine output: ValidationError"
