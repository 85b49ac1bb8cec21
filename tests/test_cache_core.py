"""Cache keys and the false-hit guard (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cloud.core.cachekeys import Guard, exact_key, guard_of, mismatch, normalize


def test_normalize_ignores_case_spacing_and_trailing_punctuation() -> None:
    assert normalize("  What is   MQTT?? ") == normalize("what is mqtt") == "what is mqtt"


def test_exact_key_scopes_tenant_model_system_and_budget() -> None:
    base = exact_key("acme", "v1", "What is MQTT?", None, 64)
    assert base == exact_key("acme", "v1", "what is  mqtt", None, 64)
    assert base != exact_key("other", "v1", "What is MQTT?", None, 64)
    assert base != exact_key("acme", "v2", "What is MQTT?", None, 64)
    assert base != exact_key("acme", "v1", "What is MQTT?", "Be brief.", 64)
    assert base != exact_key("acme", "v1", "What is MQTT?", None, 65)


def test_guard_catches_negation_numbers_entities_and_order() -> None:
    def why(a: str, b: str) -> str | None:
        return mismatch(guard_of(a), guard_of(b))

    assert why("Should I enable TLS?", "Should I not enable TLS?") == "negation mismatch"
    assert why("Don't restart it", "Do not restart it") is None  # same polarity, spelled differently
    assert why("Is port 1883 open?", "Is port 8883 open?") == "number mismatch"
    assert why("Can I run two consumers?", "Can I run 2 consumers?") is None
    assert why("What is the capital of France?", "What is the capital of Germany?") == "entity mismatch"
    assert why("What is MQTT?", "what is mqtt") is None
    assert why("Is MQTT better than AMQP?", "Is AMQP better than MQTT?") == "entity order mismatch"


@given(st.text(max_size=200))
def test_guard_round_trips_and_matches_itself(prompt: str) -> None:
    guard = guard_of(prompt)
    assert Guard.from_json(guard.to_json()) == guard
    assert mismatch(guard, guard) is None
