"""The pure escalation policy: every decision has a reason and its scores."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.core.policy import (
    LocalAnswer,
    PolicyConfig,
    TenantOverride,
    after_inference,
    before_inference,
    for_tenant,
)
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


# -- tenant policy -------------------------------------------------------------------------------------------



def test_tenant_that_always_escalates_skips_the_draft_and_says_why() -> None:
    config = for_tenant(CONFIG, TenantOverride(escalation="always"))
    decision = before_inference(_req(), config)
    assert decision is not None
    assert decision.escalate
    assert decision.reason == "tenant:always"
    assert "prompt_chars" in decision.scores


def test_tenant_that_never_escalates_keeps_even_a_refusal_local_with_scores() -> None:
    config = for_tenant(CONFIG, TenantOverride(escalation="never"))
    assert before_inference(_req("x" * 10_000), config) is None  # drafts even an over-long prompt
    decision = after_inference(_req(tags=("cloud",)), LocalAnswer("I don't know", math.log(0.01), True), config)
    assert not decision.escalate
    assert decision.reason == "local:tenant_never"
    assert decision.scores["refusal"] == 1.0
    assert decision.confidence == pytest.approx(0.01, abs=1e-3)


def test_tenant_override_changes_only_what_it_names() -> None:
    config = for_tenant(CONFIG, TenantOverride(min_confidence=0.95, cloud_tags=frozenset({"legal"})))
    assert config.max_local_prompt_chars == CONFIG.max_local_prompt_chars
    assert config.escalation == "auto"
    assert for_tenant(CONFIG, None) is CONFIG
    low = after_inference(_req(), LocalAnswer("4", math.log(0.9), truncated=False), config)
    assert (low.escalate, low.reason) == (True, "low_confidence")
    tagged = after_inference(_req(tags=("legal",)), LocalAnswer("4", math.log(0.99), truncated=False), config)
    assert tagged.reason == "cloud_tag:legal"
    untagged = after_inference(_req(tags=("complex",)), LocalAnswer("4", math.log(0.99), truncated=False), config)
    assert not untagged.escalate


def test_settings_build_each_tenants_policy_from_json_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from edge.settings import EdgeSettings  # noqa: PLC0415

    monkeypatch.setenv("EBRAIN_TENANT_POLICIES", '{"acme": {"escalation": "never", "min_confidence": 0.9}}')
    settings = EdgeSettings(tenant="acme")
    assert settings.policy().escalation == "never"
    assert settings.policy().min_confidence == 0.9
    assert settings.policy("other").escalation == "auto"


@given(
    escalation=st.sampled_from(["auto", "always", "never"]),
    confidence=st.floats(min_value=1e-6, max_value=1.0),
    truncated=st.booleans(),
    tags=st.lists(st.sampled_from(["cloud", "complex", "x"]), max_size=3),
)
def test_tenant_mode_is_always_honoured_and_every_decision_has_scores(
    escalation: str, confidence: float, truncated: bool, tags: list[str]
) -> None:
    config = for_tenant(CONFIG, TenantOverride(escalation=escalation))  # type: ignore[arg-type]
    decision = after_inference(_req(tags=tuple(tags)), LocalAnswer("ok", math.log(confidence), truncated), config)
    assert decision.reason
    assert "confidence" in decision.scores
    if escalation == "always":
        assert decision.escalate
    if escalation == "never":
        assert not decision.escalate
