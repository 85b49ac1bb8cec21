"""The pure escalation policy: every decision has a reason and its scores."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.core.policy import LocalAnswer, PolicyConfig, after_inference, before_inference
from schemas import InferenceRequest

CONFIG = PolicyConfig(min_confidence=0.4)


def _req(prompt: str = "What is 2+2?", tags: tuple[str, ...] = ()) -> InferenceRequest:
    return InferenceRequest(request_id="r", prompt=prompt, tags=tags)


def test_confident_complete_answer_stays_local() -> None:
    decision = after_inference(_req(), LocalAnswer("4", math.log(0.9), truncated=False), CONFIG)
    assert not decision.escalate
    assert decision.reason == "local:confident"
    assert decision.confidence == pytest.approx(0.9, abs=1e-3)


@pytest.mark.parametrize(
    ("answer", "tags", "reason"),
    [
        (LocalAnswer("4", math.log(0.9), False), ("complex",), "cloud_tag:complex"),
        (LocalAnswer("I don't know, sorry.", math.log(0.9), False), (), "refusal"),
        (LocalAnswer("As an AI I cannot", math.log(0.9), False), (), "refusal"),
        (LocalAnswer("   ", math.log(0.9), False), (), "refusal"),
        (LocalAnswer("four and then", math.log(0.9), True), (), "truncated"),
        (LocalAnswer("maybe 5", math.log(0.1), False), (), "low_confidence"),
        (LocalAnswer("maybe 5", None, False), (), "low_confidence"),
    ],
)
def test_escalation_reasons(answer: LocalAnswer, tags: tuple[str, ...], reason: str) -> None:
    decision = after_inference(_req(tags=tags), answer, CONFIG)
    assert decision.escalate
    assert decision.reason == reason
    assert "confidence" in decision.scores


def test_truncation_can_be_allowed() -> None:
    config = PolicyConfig(min_confidence=0.0, escalate_on_truncation=False)
    assert not after_inference(_req(), LocalAnswer("long", math.log(0.5), True), config).escalate


def test_long_prompt_escalates_before_drafting() -> None:
    decision = before_inference(_req("x" * 3000), PolicyConfig(max_local_prompt_chars=2000))
    assert decision is not None
    assert decision.escalate
    assert decision.reason == "prompt_too_long"
    assert before_inference(_req("short"), CONFIG) is None


@given(logprob=st.floats(-20, 0), truncated=st.booleans(), text=st.text(max_size=50))
def test_decision_is_total_and_scored(logprob: float, truncated: bool, text: str) -> None:
    decision = after_inference(_req(), LocalAnswer(text, logprob, truncated), CONFIG)
    assert decision.reason
    assert 0.0 <= decision.scores["confidence"] <= 1.0
    if not decision.escalate:
        assert decision.scores["confidence"] >= CONFIG.min_confidence
