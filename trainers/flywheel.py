"""The flywheel, shown: the fleet escalates what it is unsure of, the cloud answers, a round trains on those
answers, the gate judges, the rollout ships, and the same held-out workload escalates less.

`run_flywheel` is what `ebrain demo --flywheel` calls. Stages:
1. before: the edge model answers the held-out workload through the edge's own engine and policy;
2. fleet traffic: it answers the training workload; escalated prompts go to the teacher (the cloud model),
   whose answers with the edge drafts become `distill` records (or the records come from a dataset manifest);
3. one training round (SFT on teacher answers, DPO teacher-over-draft), the evaluation gate, the registry;
4. rollout: with Kafka and a fleet, a canary rollout decided on device telemetry; without, the gate's verdict
   promotes directly (logged as such);
5. after: the current model (promoted candidate, or still the base) answers the held-out workload again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.core.policy import PolicyConfig
from trainers import workload
from trainers.adapters.evaluate import EvalConfig, answer
from trainers.adapters.registry import Registry
from trainers.adapters.train import TrainingDivergedError
from trainers.round import NotEnoughDataError, ensure_base, run_round
from trainers.settings import TrainerSettings, TrainKnobs

log = logging.getLogger(__name__)

Echo = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class FlywheelConfig:
    """What the flywheel runs on. `teacher` is a GGUF spec or path (the cloud model)."""

    teacher: str = "smollm2"
    train_prompts: tuple[str, ...] = field(default_factory=lambda: tuple(workload.split()[0]))
    heldout_prompts: tuple[str, ...] = field(default_factory=lambda: tuple(workload.split()[1]))
    teacher_system: str = workload.TEACHER_SYSTEM
    teacher_max_tokens: int = 40  # under the edge budget (48): taught answers end before the edge truncates


def demo_settings(state_dir: Path, model: str, **overrides: Any) -> TrainerSettings:
    """Settings of the measured flywheel run (README): a registry, tools and models under `state_dir`,
    40 LoRA SFT steps at 5e-4, 5 DPO steps, the edge's 48-token budget."""
    base: dict[str, Any] = {"model": model, "registry_dir": state_dir / "registry", "tools_dir": state_dir / "tools",
            "models_dir": state_dir / "models", "eval_max_tokens": 48,
            "train": TrainKnobs(max_steps=40, learning_rate=5e-4, dpo_steps=5, max_length=256)}
    return TrainerSettings().model_copy(update=base | overrides)


def _rate(flags: Sequence[bool]) -> float:
    return round(sum(flags) / len(flags), 4) if flags else 0.0


def teacher_answers(teacher: Path, prompts: Sequence[str], system: str, max_tokens: int,
                    threads: int) -> list[str | None]:
    """The teacher's answer per prompt; None where it did not finish within `max_tokens` (not taught)."""
    from ebrain.inference.llama import LlamaCppEngine  # noqa: PLC0415
    from schemas import InferenceRequest  # noqa: PLC0415

    async def run() -> list[str | None]:
        out: list[str | None] = []
        async with LlamaCppEngine(teacher, n_ctx=1024, n_threads=threads, max_queue=1) as engine:
            for i, prompt in enumerate(prompts):
                done = await engine.complete(InferenceRequest(request_id=f"teach-{i}", prompt=prompt,
                                                              system=system, max_tokens=max_tokens))
                out.append(done.text.strip() if done.finish_reason == "stop" and done.text.strip() else None)
        return out

    return asyncio.run(run())


def collect_records(edge: Path, teacher: Path, config: FlywheelConfig, eval_config: EvalConfig,
                    threads: int) -> tuple[list[dict[str, Any]], float]:
    """Run the training workload on the edge model; escalations get teacher answers. (records, escalation rate)."""
    drafts = answer(edge, config.train_prompts, eval_config)
    escalated = [(p, d) for p, d, e in zip(config.train_prompts, drafts.texts, drafts.escalated, strict=True) if e]
    answers = teacher_answers(teacher, [p for p, _ in escalated], config.teacher_system, config.teacher_max_tokens,
                              threads)
    records = [{"record_id": f"fw-{i}", "kind": "distill", "prompt": p, "draft": d, "answer": a}
               for i, ((p, d), a) in enumerate(zip(escalated, answers, strict=True)) if a]
    records += [{"record_id": f"fw-local-{i}", "kind": "local", "prompt": p, "answer": d}
                for i, (p, d, e) in enumerate(zip(config.train_prompts, drafts.texts, drafts.escalated, strict=True))
                if not e]
    return records, _rate(drafts.escalated)


def run_flywheel(settings: TrainerSettings, config: FlywheelConfig, *, echo: Echo = print,
                 rollout: Callable[[Registry, str], str] | None = None) -> dict[str, Any]:
    """One turn of the flywheel; returns the summary keys the demo prints (escalation_rate_before/after, promoted).

    `rollout(registry, version)` returns 'promote' or 'rollback' (a canary rollout on a live fleet); without it a
    candidate that passed the gate is promoted directly.
    """
    from ebrain.models import resolve_model  # noqa: PLC0415

    started = time.monotonic()
    registry = Registry(settings.registry_dir, settings.model_id)
    base = ensure_base(settings, registry)
    base_path = registry.model_path(base["version"])
    teacher = resolve_model(config.teacher, settings.models_dir)
    ecfg = EvalConfig(max_tokens=settings.eval_max_tokens, threads=settings.eval_threads,
                      policy=PolicyConfig(min_confidence=settings.min_confidence))
    echo(f"flywheel: base {base['version']} answers the held-out workload ({len(config.heldout_prompts)} prompts)")
    before = answer(base_path, config.heldout_prompts, ecfg)
    echo(f"flywheel: escalation rate before {_rate(before.escalated)}; fleet traffic "
         f"({len(config.train_prompts)} prompts), escalations answered by the teacher {teacher.name}")
    records, traffic_rate = collect_records(base_path, teacher, config, ecfg, settings.eval_threads)
    echo(f"flywheel: {sum(r['kind'] == 'distill' for r in records)} teacher records; training round")
    try:
        result = run_round(settings, records, data_manifest_id=None, registry=registry)
    except (NotEnoughDataError, TrainingDivergedError) as exc:  # the round is off; the fleet keeps its model
        echo(f"flywheel: round aborted: {exc}")
        rate = _rate(before.escalated)
        return {"escalation_rate_before": rate, "escalation_rate_after": rate, "promoted": False,
                "aborted": str(exc), "teacher_records": sum(r["kind"] == "distill" for r in records),
                "model_version": base["version"], "flywheel_s": round(time.monotonic() - started, 1)}
    echo(f"flywheel: gate {'passed' if result.promoted else 'refused: ' + '; '.join(result.decision.reasons)}")
    verdict = "not_run"
    if result.promoted:
        verdict = rollout(registry, result.version) if rollout else "promote"
        if rollout is None:
            registry.set_status(result.version, "promoted", decision={"reason": "gate passed; no fleet to canary"})
    current = registry.current() or base
    after = answer(registry.model_path(current["version"]), config.heldout_prompts, ecfg)
    summary = {
        "escalation_rate_before": _rate(before.escalated),
        "escalation_rate_after": _rate(after.escalated),
        "promoted": result.promoted and verdict == "promote",
        "confidence_before": round(sum(before.confidences) / len(before.confidences), 4),
        "confidence_after": round(sum(after.confidences) / len(after.confidences), 4),
        "heldout_prompts": len(config.heldout_prompts),
        "traffic_escalation_rate": traffic_rate,
        "teacher_records": sum(r["kind"] == "distill" for r in records),
        "candidate": result.version,
        "model_version": current["version"],
        "gate_failed": result.decision.reasons,
        "rollout": verdict,
        "report": str(result.report_path),
        "flywheel_s": round(time.monotonic() - started, 1),
    }
    log.info("flywheel done", extra=summary)
    return summary
