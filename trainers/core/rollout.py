"""The canary verdict: compare canary devices with the rest on edge telemetry, then promote or roll back.

Telemetry counters are cumulative per device (`local`, `escalated`, `failed`, `rejected`, optionally
`latency_ms_sum`), so a window's numbers are the differences between a device's first and last sample in it.
Only samples whose model version is the cohort's expected one count: a canary still on the old model (update
not applied yet) is not evidence about the new one.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["promote", "rollback", "wait"]


@dataclass(frozen=True, slots=True)
class Sample:
    """One telemetry message, reduced to what the verdict needs."""

    device: str
    model_version: str
    time: float
    counters: dict[str, float]


@dataclass(frozen=True, slots=True)
class CohortStats:
    """A cohort's window: devices seen, requests answered, and the three compared rates."""

    devices: int
    requests: float
    escalation_rate: float
    error_rate: float
    latency_ms: float | None


@dataclass(frozen=True, slots=True)
class RolloutConfig:
    """How much worse a canary may be before it is rolled back, and how much evidence a verdict needs."""

    canary_fraction: float = 0.25
    min_requests: float = 8.0  # per cohort, in the window
    max_escalation_increase: float = 0.05  # absolute
    max_error_increase: float = 0.02  # absolute
    max_latency_ratio: float = 1.5  # canary latency / control latency


@dataclass(frozen=True, slots=True)
class RolloutDecision:
    """The verdict, why, and both cohorts' numbers (logged with every decision)."""

    verdict: Verdict
    reason: str
    canary: CohortStats
    control: CohortStats


def choose_canary(devices: Iterable[str], fraction: float, seed: str) -> list[str]:
    """A stable canary set: devices ranked by hash(seed, device), the first ceil(fraction*n), at least one."""
    ranked = sorted(set(devices), key=lambda d: hashlib.sha256(f"{seed}\x1f{d}".encode()).hexdigest())
    if not ranked:
        return []
    n = min(len(ranked), max(1, math.ceil(fraction * len(ranked))))
    return sorted(ranked[:n])


def _delta(first: Sample, last: Sample, key: str) -> float:
    return max(0.0, last.counters.get(key, 0.0) - first.counters.get(key, 0.0))


def cohort_stats(samples: Iterable[Sample], version: str) -> CohortStats:
    """Window numbers for samples on `version`, from each device's first and last sample (by time)."""
    by_device: dict[str, list[Sample]] = {}
    for s in samples:
        if s.model_version == version:
            by_device.setdefault(s.device, []).append(s)
    local = escalated = errors = latency_sum = 0.0
    for series in by_device.values():
        first, last = min(series, key=lambda s: s.time), max(series, key=lambda s: s.time)
        local += _delta(first, last, "local")
        escalated += _delta(first, last, "escalated")
        errors += _delta(first, last, "failed") + _delta(first, last, "rejected")
        latency_sum += _delta(first, last, "latency_ms_sum")
    answered = local + escalated
    total = answered + errors
    return CohortStats(
        devices=len(by_device),
        requests=answered,
        escalation_rate=escalated / answered if answered else 0.0,
        error_rate=errors / total if total else 0.0,
        latency_ms=latency_sum / answered if answered and latency_sum > 0 else None,
    )


def decide(canary: CohortStats, control: CohortStats, config: RolloutConfig) -> RolloutDecision:
    """Roll back on a worse escalation rate, error rate or latency beyond the margins; promote when neither
    cohort lacks evidence and nothing is worse; otherwise wait for more telemetry."""
    if canary.requests < config.min_requests or control.requests < config.min_requests:
        why = f"need {config.min_requests} requests per cohort: canary {canary.requests}, control {control.requests}"
        return RolloutDecision("wait", why, canary, control)
    worse: list[str] = []
    if canary.escalation_rate > control.escalation_rate + config.max_escalation_increase:
        worse.append(f"escalation rate {canary.escalation_rate:.3f} vs {control.escalation_rate:.3f}")
    if canary.error_rate > control.error_rate + config.max_error_increase:
        worse.append(f"error rate {canary.error_rate:.3f} vs {control.error_rate:.3f}")
    if (canary.latency_ms is not None and control.latency_ms is not None
            and canary.latency_ms > control.latency_ms * config.max_latency_ratio):
        worse.append(f"latency {canary.latency_ms:.0f} ms vs {control.latency_ms:.0f} ms")
    if worse:
        return RolloutDecision("rollback", "canary worse: " + "; ".join(worse), canary, control)
    why = (f"canary escalation {canary.escalation_rate:.3f} vs {control.escalation_rate:.3f}, "
           f"errors {canary.error_rate:.3f} vs {control.error_rate:.3f}")
    return RolloutDecision("promote", why, canary, control)


def split_samples(samples: Sequence[Sample], canary: Iterable[str]) -> tuple[list[Sample], list[Sample]]:
    """(canary samples, control samples) by device."""
    chosen = set(canary)
    return [s for s in samples if s.device in chosen], [s for s in samples if s.device not in chosen]
