"""Canary rollout of a registered candidate: order it onto a canary fraction of the fleet, compare canary and
control telemetry over a window, then promote to every device or roll the canary back to the parent.

Every verdict (wait, promote, rollback) is logged with both cohorts' numbers and stored in the registry entry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from schemas import ModelUpdate
from trainers import metrics
from trainers.adapters.registry import Registry
from trainers.core.rollout import (
    RolloutConfig,
    RolloutDecision,
    Sample,
    choose_canary,
    cohort_stats,
    decide,
    split_samples,
)

log = logging.getLogger(__name__)

Device = tuple[str, str]  # (tenant, device)


class Publisher(Protocol):
    async def publish(self, update: ModelUpdate, devices: Sequence[Device]) -> int: ...


class Window(Protocol):
    def samples(self) -> list[Sample]: ...

    async def wait_new(self, timeout_s: float) -> bool: ...


@dataclass(frozen=True, slots=True)
class RolloutResult:
    """The final verdict, who was canary, and the decision's numbers."""

    version: str
    parent: str
    verdict: str
    reason: str
    canary: list[str]
    decision: RolloutDecision | None

    def summary(self) -> dict[str, Any]:
        numbers = ({"canary": asdict(self.decision.canary), "control": asdict(self.decision.control)}
                   if self.decision else {})
        return {"version": self.version, "parent": self.parent, "verdict": self.verdict, "reason": self.reason,
                "canary_devices": self.canary, **numbers}


def update_for(registry: Registry, version: str, *, canary: bool, base_url: str | None) -> ModelUpdate:
    """The ModelUpdate order for a registered version: a URL under `base_url`, else the registry path."""
    entry = registry.entry(version)
    path = registry.model_path(version)
    url = f"{base_url.rstrip('/')}/{version}/model.gguf" if base_url else None
    return ModelUpdate(model_id=registry.model_id, version=version, url=url, path=None if url else str(path.resolve()),
                       sha256=entry["sha256"], size_bytes=entry["size_bytes"], canary=canary)


def _log(decision: RolloutDecision, version: str) -> None:
    log.info("rollout decision", extra={"version": version, "verdict": decision.verdict, "reason": decision.reason,
                                        "canary": asdict(decision.canary), "control": asdict(decision.control)})


async def observe(window: Window, canary: Sequence[str], version: str, parent: str, config: RolloutConfig,
                  *, deadline_s: float, poll_s: float = 1.0) -> RolloutDecision | None:
    """Decide as soon as the telemetry allows, or return the last 'wait' decision (None if none) at the deadline."""
    end = time.monotonic() + deadline_s
    last: RolloutDecision | None = None
    while True:
        can, ctl = split_samples(window.samples(), canary)
        decision = decide(cohort_stats(can, version), cohort_stats(ctl, parent), config)
        if last is None or decision.verdict != "wait" or decision.reason != last.reason:
            _log(decision, version)
        last = decision
        left = end - time.monotonic()
        if decision.verdict != "wait" or left <= 0:
            return last
        await window.wait_new(min(poll_s, left))


async def canary_rollout(registry: Registry, version: str, fleet: Sequence[Device], *, publisher: Publisher,
                         window: Window, config: RolloutConfig, deadline_s: float,
                         base_url: str | None = None) -> RolloutResult:
    """Canary, observe, then promote to all or roll back. No verdict by the deadline rolls back (safe side)."""
    parent = registry.entry(version)["parent"]
    names = {f"{t}/{d}": (t, d) for t, d in fleet}
    canary = choose_canary(names, config.canary_fraction, seed=version)
    registry.set_status(version, "canary", devices=canary)
    await publisher.publish(update_for(registry, version, canary=True, base_url=base_url), [names[c] for c in canary])
    decision = await observe(window, canary, version, parent, config, deadline_s=deadline_s)
    verdict = decision.verdict if decision else "wait"
    reason = decision.reason if decision else "no telemetry"
    numbers = RolloutResult(version, parent, verdict, reason, canary, decision).summary()
    label = metrics.rollout_label(verdict)
    if verdict == "promote":
        rest = [names[n] for n in sorted(names) if n not in canary]
        await publisher.publish(update_for(registry, version, canary=False, base_url=base_url), rest)
        registry.set_status(version, "promoted", decision=numbers)
    else:
        reason = reason if verdict == "rollback" else f"no verdict before the deadline: {reason}"
        await publisher.publish(update_for(registry, parent, canary=False, base_url=base_url),
                                [names[c] for c in canary])
        registry.set_status(version, "rolled_back", decision={**numbers, "reason": reason})
        verdict = "rollback"
    metrics.ROLLOUTS.labels(label).inc()
    log.info("rollout done", extra={"version": version, "verdict": verdict, "reason": reason, "outcome": label})
    return RolloutResult(version, parent, verdict, reason, canary, decision)
