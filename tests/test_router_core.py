"""The pure routing core: circuit breaker, saturation, planning, the defer/fail verdict, vLLM metrics."""

from __future__ import annotations

from cloud.core.routing import (
    BackendState,
    Breaker,
    BreakerState,
    Limits,
    Saturation,
    Verdict,
    after_round,
    parse_vllm_metrics,
    plan,
)

LIMITS = Limits(max_kv_cache_usage=0.9, max_waiting=4, overload_hold_s=1.0, stale_after_s=10.0)


def test_breaker_opens_at_threshold_and_probes_after_cooldown() -> None:
    breaker = Breaker(threshold=2, cooldown_s=5.0)
    breaker.failure(0.0)
    assert breaker.allow(0.1)
    breaker.failure(1.0)
    assert breaker.state(2.0) is BreakerState.OPEN
    assert not breaker.allow(2.0)
    assert breaker.state(6.0) is BreakerState.HALF_OPEN
    assert breaker.allow(6.0)  # the one probe
    assert not breaker.allow(6.0)  # no second probe while the first is out
    breaker.failure(6.5)  # failed probe: open for another cooldown
    assert not breaker.allow(7.0)
    assert breaker.allow(11.6)
    breaker.success()
    assert breaker.state(11.7) is BreakerState.CLOSED
    assert breaker.failures == 0


def test_released_probe_lets_the_next_request_probe() -> None:
    breaker = Breaker(threshold=1, cooldown_s=1.0)
    breaker.failure(0.0)
    assert breaker.allow(2.0)
    breaker.release()
    assert breaker.allow(2.0)


def test_saturation_from_metrics_overload_and_staleness() -> None:
    state = BackendState("vllm")
    assert state.saturated(LIMITS, 0.0) is None
    state.saturation = Saturation(kv_cache_usage=0.95, seen_at=1.0)
    assert state.saturated(LIMITS, 2.0) == "kv cache 95%"
    assert state.saturated(LIMITS, 20.0) is None  # stale scrape ignored
    state.saturation = Saturation(waiting=5, seen_at=1.0)
    assert state.saturated(LIMITS, 2.0) == "5 waiting"
    state.saturation = Saturation()
    state.overloaded(LIMITS, 3.0)
    assert state.saturated(LIMITS, 3.5) == "overloaded (429/503)"
    assert state.saturated(LIMITS, 4.5) is None


def test_plan_keeps_preference_order_and_says_why_it_skips() -> None:
    gpu, cpu = BackendState("vllm", Breaker(threshold=1)), BackendState("llama")
    assert plan([gpu, cpu], LIMITS, 0.0).order == ("vllm", "llama")
    gpu.breaker.failure(0.0)
    planned = plan([gpu, cpu], LIMITS, 1.0)
    assert planned.order == ("llama",)
    assert planned.skipped == (("vllm", "circuit open"),)
    cpu.overloaded(LIMITS, 1.0)
    assert plan([gpu, cpu], LIMITS, 1.5).order == ()


def test_after_round_retries_then_defers_then_fails() -> None:
    kwargs = {"backoff_s": 0.1, "max_rounds": 2, "retry_delay_s": 2.0}
    assert after_round(remaining_s=10, rounds=0, **kwargs) is Verdict.RETRY_NOW
    assert after_round(remaining_s=10, rounds=2, **kwargs) is Verdict.DEFER
    assert after_round(remaining_s=1.5, rounds=2, **kwargs) is Verdict.FAIL
    assert after_round(remaining_s=0.05, rounds=0, **kwargs) is Verdict.FAIL  # no room even to back off
    assert after_round(remaining_s=-1, rounds=0, **kwargs) is Verdict.FAIL


def test_parse_vllm_metrics_reads_either_kv_gauge_and_sums_engines() -> None:
    text = """# HELP vllm:num_requests_waiting Number of requests waiting.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="smollm2"} 2.0
vllm:num_requests_waiting{engine="1",model_name="smollm2"} 3.0
vllm:num_requests_running{engine="0",model_name="smollm2"} 8.0
vllm:gpu_cache_usage_perc{engine="0",model_name="smollm2"} 0.42
vllm:prompt_tokens_total{engine="0"} 1234.0
"""
    sat = parse_vllm_metrics(text, now=7.0)
    assert sat == Saturation(kv_cache_usage=0.42, waiting=5.0, running=8.0, seen_at=7.0)
    assert parse_vllm_metrics("vllm:kv_cache_usage_perc 0.5\ngarbage line\n", 0.0).kv_cache_usage == 0.5
    assert parse_vllm_metrics("", 0.0).waiting == 0.0


def test_planning_takes_no_probe_slot() -> None:
    gpu, cpu = BackendState("vllm"), BackendState("llama", Breaker(threshold=1, cooldown_s=1.0))
    cpu.breaker.failure(0.0)
    for _ in range(3):  # planned again and again while the primary serves: the replica's probe stays free
        assert plan([gpu, cpu], LIMITS, 2.0).order == ("vllm", "llama")
    assert cpu.breaker.allow(2.0)
    assert plan([gpu, cpu], LIMITS, 2.0).skipped == (("llama", "circuit half_open"),)
