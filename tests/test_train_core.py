"""Pure-core tests of the trainers: pairs, split, gate margins, canary verdict, divergence, concise targets."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from trainers.core import concise, divergence, gate, pairs, rollout
from trainers.core.quant import erases_finetune


def _row(i: int, **kw: object) -> dict[str, object]:
    base: dict[str, object] = {"record_id": f"r{i}", "kind": "distill", "prompt": f"What is {i}?",
                               "answer": f"It is the number {i}.", "draft": "no idea", "agreement": 0.1}
    return base | kw


CFG = pairs.PairConfig()


def test_sft_examples_take_teacher_answers_only() -> None:
    rows = [_row(1), _row(2, kind="local"), _row(3, answer=" "), _row(4, kind="synth", draft=None)]
    assert [e.record_id for e in pairs.sft_examples(rows, CFG)] == ["r1", "r4"]
    assert pairs.sft_examples(rows, CFG)[0].answer == "It is the number 1."


def test_dpo_pairs_prefer_teacher_over_disagreeing_draft() -> None:
    rows = [_row(1), _row(2, agreement=0.95), _row(3, draft=None), _row(4, draft="It is the number 4.")]
    got = pairs.dpo_pairs(rows, CFG)
    assert [(p.record_id, p.chosen, p.rejected, p.source) for p in got] == [
        ("r1", "It is the number 1.", "no idea", "teacher")]


def test_dpo_pairs_from_feedback() -> None:
    row = {"record_id": "f", "kind": "local", "prompt": "p", "answer": "bad", "rating": -1, "preferred": "good"}
    assert pairs.dpo_pairs([row], CFG) == [pairs.DpoPair("f", "p", "good", "bad", "feedback")]


def test_dpo_agreement_falls_back_to_token_overlap() -> None:
    row = _row(1, agreement=None, draft="It is the number 1 indeed.")
    assert pairs.dpo_pairs([row], CFG) == []  # overlap 0.91 >= 0.9: the draft already knew


@given(st.lists(st.text(min_size=1, max_size=8), min_size=2, max_size=40, unique=True))
def test_split_is_stable_and_never_empty(ids: list[str]) -> None:
    items = [pairs.SftExample(i, "p", "a") for i in ids]
    train, held = pairs.split(items, CFG)
    assert train
    assert held
    assert sorted(x.record_id for x in train + held) == sorted(ids)
    assert pairs.split(items, CFG) == (train, held)


@given(st.text(max_size=60), st.text(max_size=60))
def test_token_overlap_bounds_and_symmetry(a: str, b: str) -> None:
    score = pairs.token_overlap(a, b)
    assert 0.0 <= score <= 1.0
    assert math.isclose(score, pairs.token_overlap(b, a))
    assert pairs.token_overlap(a, a) == 1.0


CURRENT = gate.EvalMetrics(perplexity=20.0, confidence=0.30, similarity=0.5, regression=0.6)


def test_gate_promotes_a_clear_improvement() -> None:
    better = gate.EvalMetrics(perplexity=12.0, confidence=0.45, similarity=0.55, regression=0.6)
    decision = gate.decide(CURRENT, better, gate.GateConfig())
    assert decision.promote
    assert decision.reasons == []


def test_gate_refuses_a_worse_candidate_with_its_numbers() -> None:
    worse = gate.EvalMetrics(perplexity=25.0, confidence=0.2, similarity=0.5, regression=0.6)
    decision = gate.decide(CURRENT, worse, gate.GateConfig())
    assert not decision.promote
    assert [c.metric for c in decision.checks if not c.passed] == ["perplexity", "confidence"]
    assert "25.0" in decision.reasons[0]


def test_gate_margin_and_regression_guard() -> None:
    tiny_gain = gate.EvalMetrics(perplexity=19.8, confidence=0.31, similarity=0.5, regression=0.6)
    assert not gate.decide(CURRENT, tiny_gain, gate.GateConfig()).promote  # 1% < the 2% margin
    regressed = gate.EvalMetrics(perplexity=10.0, confidence=0.5, similarity=0.5, regression=0.55)
    decision = gate.decide(CURRENT, regressed, gate.GateConfig())
    assert [c.metric for c in decision.checks if not c.passed] == ["regression"]


def test_gate_does_not_judge_unmeasured_metrics() -> None:
    cur = gate.EvalMetrics(perplexity=20.0, confidence=0.3)
    cand = gate.EvalMetrics(perplexity=15.0, confidence=0.35, similarity=0.1)
    decision = gate.decide(cur, cand, gate.GateConfig())
    assert decision.promote
    assert {c.metric: c.note for c in decision.checks}["similarity"] == "not measured on both"


def _samples(device: str, version: str, local: float, escalated: float, failed: float = 0.0,
             latency: float = 0.0) -> list[rollout.Sample]:
    return [rollout.Sample(device, version, 0.0, {"local": 1.0, "escalated": 1.0}),
            rollout.Sample(device, version, 10.0, {"local": 1 + local, "escalated": 1 + escalated,
                                                   "failed": failed, "latency_ms_sum": latency})]


def test_cohort_stats_use_window_deltas_on_the_expected_version() -> None:
    samples = [*_samples("a", "v2", 8, 2, latency=5000), *_samples("b", "v2", 6, 4, failed=1, latency=5000),
               *_samples("c", "v1", 0, 50)]
    stats = rollout.cohort_stats(samples, "v2")
    assert stats.devices == 2
    assert stats.requests == 20
    assert stats.escalation_rate == 0.3
    assert math.isclose(stats.error_rate, 1 / 21)
    assert stats.latency_ms == 500


def test_canary_that_escalates_more_is_rolled_back() -> None:
    canary = rollout.cohort_stats(_samples("a", "v2", 4, 6), "v2")
    control = rollout.cohort_stats(_samples("b", "v1", 7, 3), "v1")
    decision = rollout.decide(canary, control, rollout.RolloutConfig())
    assert decision.verdict == "rollback"
    assert "escalation rate 0.600 vs 0.300" in decision.reason


def test_canary_that_is_as_good_is_promoted_and_thin_evidence_waits() -> None:
    canary = rollout.cohort_stats(_samples("a", "v2", 8, 2), "v2")
    control = rollout.cohort_stats(_samples("b", "v1", 7, 3), "v1")
    assert rollout.decide(canary, control, rollout.RolloutConfig()).verdict == "promote"
    few = rollout.cohort_stats(_samples("a", "v2", 1, 0), "v2")
    assert rollout.decide(few, control, rollout.RolloutConfig()).verdict == "wait"


def test_canary_errors_and_latency_roll_back() -> None:
    control = rollout.cohort_stats(_samples("b", "v1", 8, 2, latency=1000), "v1")
    erring = rollout.cohort_stats(_samples("a", "v2", 8, 2, failed=3, latency=1000), "v2")
    assert "error rate" in rollout.decide(erring, control, rollout.RolloutConfig()).reason
    slow = rollout.cohort_stats(_samples("a", "v2", 8, 2, latency=5000), "v2")
    assert "latency 500 ms vs 100 ms" in rollout.decide(slow, control, rollout.RolloutConfig()).reason


@given(st.sets(st.text(min_size=1, max_size=6), max_size=30), st.floats(0.0, 1.0))
def test_choose_canary_is_stable_and_bounded(devices: set[str], fraction: float) -> None:
    chosen = rollout.choose_canary(devices, fraction, "v2")
    assert chosen == rollout.choose_canary(sorted(devices, reverse=True), fraction, "v2")
    assert set(chosen) <= devices
    assert (len(chosen) >= 1) == bool(devices)
    assert len(chosen) <= max(1, math.ceil(fraction * len(devices)))


DIV = divergence.DivergenceConfig()


def test_divergence_flags_nan_blowup_and_kl() -> None:
    assert divergence.check([2.0, 1.5, float("nan")], [], DIV) == divergence.Divergence(2, "loss is nan at step 2")
    blown = divergence.check([2.0, 1.0, 0.9, 0.8, 5.0, 6.0, 7.0], [], DIV)
    assert blown is not None
    assert blown.step == 6
    assert "over 3.0x" in blown.reason
    kl = divergence.check([1.0], [0.1, 90.0], DIV)
    assert kl is not None
    assert kl.step == 1
    assert "KL 90" in kl.reason


def test_a_decreasing_loss_is_not_divergence() -> None:
    assert divergence.check([3.0, 2.5, 2.0, 1.8, 1.7, 1.6, 1.65], [0.1, 0.2], DIV) is None
    # DPO losses near zero jitter by large ratios without diverging.
    assert divergence.check([0.69, 1e-3, 1e-6, 1e-8, 1e-7, 1e-5, 1e-4], [], DIV) is None


def _words(text: str) -> int:
    return len(text.split())


def test_concise_targets_keep_leading_whole_sentences_within_the_budget() -> None:
    text = "Check the oil every 500 hours. Replace the filters once a year! Log every inspection in"
    assert concise.concise(text, _words, 6) == "Check the oil every 500 hours."
    assert concise.concise(text, _words, 12) == "Check the oil every 500 hours. Replace the filters once a year!"
    # The unfinished tail (the teacher was cut off) is never taught, whatever the budget.
    assert concise.concise(text, _words, 1000) == "Check the oil every 500 hours. Replace the filters once a year!"
    assert concise.concise(text, _words, 5) is None  # the first sentence alone is over the budget
    assert concise.concise("no sentence end at all", _words, 100) is None


def test_list_markers_and_abbreviated_numbers_are_not_sentence_ends() -> None:
    assert concise.sentences("1. Wear gloves. 2. Wear goggles.") == ["1. Wear gloves.", "2. Wear goggles."]
    assert concise.sentences("Use gloves (nitrile). Wear a 3.5 mm visor.") == ["Use gloves (nitrile).",
                                                                               "Wear a 3.5 mm visor."]


@given(st.lists(st.sampled_from(["Stop the motor.", "Lock it out!", "Why?", "1.", "drain", "the tank", " ", "\n"]),
                max_size=12), st.integers(0, 12))
def test_a_concise_target_is_a_prefix_within_budget_ending_a_sentence(parts: list[str], budget: int) -> None:
    text = " ".join(parts)
    target = concise.concise(text, _words, budget)
    if target is None:
        return
    assert text.strip().startswith(target)
    assert _words(target) <= budget
    assert target[-1] in ".!?"
    assert not target.endswith(("1.", " 1."))  # a lone list marker is not a sentence


def test_export_quantization_that_rounds_the_fine_tune_away_is_named() -> None:
    assert erases_finetune("q4_1", 3) is not None  # Q4_1 base, Q4_1 export: the measured failure
    assert "q4_1" in (erases_finetune("q4_0", 3) or "")  # coarser still
    assert erases_finetune("q8_0", 3) is None  # what the flywheel ships
    assert erases_finetune("f16", 3) is None
    assert erases_finetune("q4_1", 0) is None  # a float base: quantizing starts from the trained weights
    assert erases_finetune("q8_0", 7) is None  # 8-bit steps are 1/16 of 4-bit ones
    assert erases_finetune("q4_1", None) is None  # unknown: silent
    assert erases_finetune("q4_1", 99) is None
