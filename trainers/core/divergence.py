"""Divergence detection over a training run's loss and KL series: abort early with a clear reason."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DivergenceConfig:
    """When a run is judged diverged. `window` steps are averaged to compare against the best seen."""

    max_loss_ratio: float = 3.0  # recent mean loss above this multiple of the best window mean
    min_loss_increase: float = 0.5  # and at least this much above it: near-zero losses jitter by large ratios
    max_kl: float = 50.0  # policy/reference log-ratio drift in nats per sequence (DPO runs)
    window: int = 3
    warmup: int = 2  # steps before the ratio test applies


@dataclass(frozen=True, slots=True)
class Divergence:
    """Why a run was aborted and at which step."""

    step: int
    reason: str


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def check(losses: Sequence[float], kls: Sequence[float], config: DivergenceConfig) -> Divergence | None:
    """The first sign of divergence in the series so far, or None: non-finite loss, loss blow-up, KL too large."""
    for step, loss in enumerate(losses):
        if not math.isfinite(loss):
            return Divergence(step, f"loss is {loss} at step {step}")
    for step, kl in enumerate(kls):
        if not math.isfinite(kl) or kl > config.max_kl:
            return Divergence(step, f"KL {kl:.4g} exceeds {config.max_kl} at step {step}")
    w = config.window
    if len(losses) < max(config.warmup, w) + w:
        return None
    best = min(_mean(losses[i : i + w]) for i in range(len(losses) - w + 1))
    recent = _mean(losses[-w:])
    if recent > best * config.max_loss_ratio and recent - best > config.min_loss_increase:
        step = len(losses) - 1
        return Divergence(step, f"loss {recent:.4g} (mean of last {w}) is over {config.max_loss_ratio}x "
                                f"the best window {best:.4g} at step {step}")
    return None
