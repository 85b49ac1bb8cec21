"""The flywheel, shown: the fleet escalates what it is unsure of, the cloud answers, a round trains on those
answers, the gate judges, the rollout ships, and the same held-out workload escalates less.

`run_flywheel` is what `ebrain demo --flywheel` calls. Stages:
1. before: the edge model answers the held-out workload through the edge's own engine and policy;
2. fleet traffic: it answers the training workload; escalated prompts go to the teacher (the cloud model),
   whose answers, cut to the leading whole sentences that fit the edge's budget (`trainers.core.concise`: the
   policy escalates an answer cut off at max_tokens, so the edge must learn to finish), become `distill` records
   with the edge drafts;
3. one training round (SFT on those targets, DPO target-over-draft), the evaluation gate, the registry;
4. rollout: when the stack (MQTT, Kafka) is up, a live fleet (gateway, cloud worker, N edge devices on the parent
   model, `trainers.fleet`) gets the candidate on a canary fraction by OTA, canary and control are compared on
   their telemetry (escalation rate, error rate, latency), then promotion to all or rollback; without a stack the
   gate's verdict promotes directly (said so in `rollout.mode`);
5. after: the current model (promoted candidate, or still the base) answers the held-out workload again.

The measurement is the edge's own: the same engine, max_tokens and escalation policy (`edge.core.policy`, nothing
relaxed) on held-out prompts about machines no training prompt mentions (`trainers.workload`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.core.policy import PolicyConfig
from trainers import workload
from trainers.adapters.evaluate import Answers, EvalConfig, answer, token_counter
from trainers.adapters.registry import Registry
from trainers.adapters.train import TrainingDivergedError
from trainers.core.concise import concise
from trainers.fleet import FleetConfig, live_rollout, rollout_summary, stack_env
from trainers.round import NotEnoughDataError, RoundResult, ensure_base, run_round
from trainers.settings import TrainerSettings, TrainKnobs

log = logging.getLogger(__name__)

Echo = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class FlywheelConfig:
    """What the flywheel runs on. `teacher` is a GGUF spec or path (the cloud model); `fleet` None: no live rollout.

    `target_tokens` bounds a taught answer (edge tokenizer, before the end-of-turn token): below the edge's
    max_tokens with room to spare, since the edge's own wording on new prompts varies around what it was taught.
    The teacher needs only a few tokens more than that: a sentence that ends within the target ends within its
    first `target_tokens` tokens (the edge and the teacher share SmolLM2's tokenizer; `concise` counts with the
    edge's either way), and the extra tokens show where a longer one would have ended.
    """

    teacher: str = "smollm2"
    train_prompts: tuple[str, ...] = field(default_factory=lambda: tuple(workload.split()[0]))
    heldout_prompts: tuple[str, ...] = field(default_factory=lambda: tuple(workload.split()[1]))
    teacher_system: str = workload.TEACHER_SYSTEM
    teacher_max_tokens: int = 40
    target_tokens: int = 32
    fleet: FleetConfig | None = field(default_factory=lambda: FleetConfig(devices=3))


def demo_settings(state_dir: Path, model: str, **overrides: Any) -> TrainerSettings:
    """Settings of the measured flywheel run (README): a registry, tools and models under `state_dir`,
    40 LoRA SFT steps at 5e-4, 5 DPO steps, the edge's 48-token budget."""
    base: dict[str, Any] = {"model": model, "registry_dir": state_dir / "registry", "tools_dir": state_dir / "tools",
            "models_dir": state_dir / "models", "eval_max_tokens": 48,
            "train": TrainKnobs(max_steps=40, learning_rate=5e-4, dpo_steps=5, max_length=256)}
    return TrainerSettings().model_copy(update=base | overrides)


def _rate(flags: Sequence[bool]) -> float:
    return round(sum(flags) / len(flags), 4) if flags else 0.0


def _reasons(answers: Answers) -> dict[str, int]:
    """How many held-out prompts escalated for each policy reason."""
    return dict(Counter(r for r, e in zip(answers.reasons, answers.escalated, strict=True) if e))


def teacher_answers(teacher: Path, prompts: Sequence[str], system: str, max_tokens: int,
                    threads: int) -> list[str]:
    """The teacher's answer per prompt (possibly cut off at `max_tokens`: `concise` keeps whole sentences)."""
    from ebrain.inference.llama import LlamaCppEngine  # noqa: PLC0415
    from schemas import InferenceRequest  # noqa: PLC0415

    async def run() -> list[str]:
        out: list[str] = []
        async with LlamaCppEngine(teacher, n_ctx=1024, n_threads=threads, max_queue=1) as engine:
            for i, prompt in enumerate(prompts):
                done = await engine.complete(InferenceRequest(request_id=f"teach-{i}", prompt=prompt,
                                                              system=system, max_tokens=max_tokens))
                out.append(done.text.strip())
        return out

    return asyncio.run(run())


def collect_records(edge: Path, teacher: Path, config: FlywheelConfig, eval_config: EvalConfig,
                    threads: int) -> tuple[list[dict[str, Any]], float]:
    """Run the training workload on the edge model; escalations get teacher answers. (records, escalation rate)."""
    drafts = answer(edge, config.train_prompts, eval_config)
    escalated = [(p, d) for p, d, e in zip(config.train_prompts, drafts.texts, drafts.escalated, strict=True) if e]
    answers = teacher_answers(teacher, [p for p, _ in escalated], config.teacher_system, config.teacher_max_tokens,
                              threads)
    count = token_counter(edge)
    targets = [concise(a, count, config.target_tokens) for a in answers]
    records = [{"record_id": f"fw-{i}", "kind": "distill", "prompt": p, "draft": d, "answer": t, "teacher": a}
               for i, ((p, d), a, t) in enumerate(zip(escalated, answers, targets, strict=True)) if t]
    records += [{"record_id": f"fw-local-{i}", "kind": "local", "prompt": p, "answer": d}
                for i, (p, d, e) in enumerate(zip(config.train_prompts, drafts.texts, drafts.escalated, strict=True))
                if not e]
    return records, _rate(drafts.escalated)


def _rollout(settings: TrainerSettings, config: FlywheelConfig, registry: Registry, result: RoundResult, *,
             teacher: Path, state_dir: Path, echo: Echo,
             rollout: Callable[[Registry, str], str] | None) -> dict[str, Any]:
    """Ship a candidate the gate passed: the given rollout, else a live canary on the stack, else gate-only."""
    if rollout is not None:
        return {"mode": "external", "verdict": rollout(registry, result.version)}
    env = stack_env(state_dir) if config.fleet is not None else None
    if config.fleet is None or env is None:
        reason = ("gate passed; no live fleet to canary (stack not running)" if config.fleet
                  else "gate passed; live fleet off")
        registry.set_status(result.version, "promoted", decision={"reason": reason})
        echo(f"flywheel: {reason}: promoted")
        return {"mode": "gate_only", "verdict": "promote", "reason": reason}
    echo(f"flywheel: canary rollout of {result.version} on a live fleet of {config.fleet.devices} devices")
    try:
        done = asyncio.run(live_rollout(settings, registry, result.version, teacher=teacher,
                                        prompts=config.heldout_prompts, env=env, state_dir=state_dir,
                                        config=config.fleet, echo=echo))
    except (RuntimeError, OSError) as exc:  # the fleet did not start: nothing shipped, the candidate waits
        log.warning("live rollout failed", extra={"version": result.version, "error": str(exc)})
        echo(f"flywheel: live rollout failed: {exc}")
        return {"mode": "canary", "verdict": "not_run", "reason": str(exc)}
    echo(f"flywheel: rollout {done.verdict}: {done.reason}")
    return rollout_summary(done)


def run_flywheel(settings: TrainerSettings, config: FlywheelConfig, *, echo: Echo = print,
                 rollout: Callable[[Registry, str], str] | None = None,
                 state_dir: Path | None = None) -> dict[str, Any]:
    """One turn of the flywheel; returns the summary keys the demo prints (escalation_rate_before/after, promoted,
    rollout with the decision and its numbers).

    `rollout(registry, version)` returns 'promote' or 'rollback' (a caller's own rollout); without it the live
    canary runs on the stack serving `state_dir` (default: the parent of `settings.models_dir`) when it is up.
    """
    from ebrain.models import resolve_model  # noqa: PLC0415

    started = time.monotonic()
    state_dir = state_dir or settings.models_dir.parent
    registry = Registry(settings.registry_dir, settings.model_id)
    base = ensure_base(settings, registry)
    base_path = registry.model_path(base["version"])
    teacher = resolve_model(config.teacher, settings.models_dir)
    ecfg = EvalConfig(max_tokens=settings.eval_max_tokens, threads=settings.eval_threads,
                      policy=PolicyConfig(min_confidence=settings.min_confidence))
    echo(f"flywheel: base {base['version']} answers the held-out workload ({len(config.heldout_prompts)} prompts)")
    before = answer(base_path, config.heldout_prompts, ecfg)
    echo(f"flywheel: escalation rate before {_rate(before.escalated)} {_reasons(before)}; fleet traffic "
         f"({len(config.train_prompts)} prompts), escalations answered by the teacher {teacher.name}")
    records, traffic_rate = collect_records(base_path, teacher, config, ecfg, settings.eval_threads)
    taught = sum(r["kind"] == "distill" for r in records)
    echo(f"flywheel: {taught} teacher records (answers cut to {config.target_tokens} tokens); training round")
    common = {"heldout_prompts": len(config.heldout_prompts), "traffic_escalation_rate": traffic_rate,
              "teacher_records": taught, "escalation_reasons_before": _reasons(before)}
    try:
        result = run_round(settings, records, data_manifest_id=None, registry=registry)
    except (NotEnoughDataError, TrainingDivergedError) as exc:  # the round is off; the fleet keeps its model
        echo(f"flywheel: round aborted: {exc}")
        rate = _rate(before.escalated)
        return {"escalation_rate_before": rate, "escalation_rate_after": rate, "promoted": False,
                "aborted": str(exc), **common, "model_version": base["version"],
                "flywheel_s": round(time.monotonic() - started, 1)}
    echo(f"flywheel: gate {'passed' if result.promoted else 'refused: ' + '; '.join(result.decision.reasons)}")
    shipped = (_rollout(settings, config, registry, result, teacher=teacher, state_dir=state_dir, echo=echo,
                        rollout=rollout) if result.promoted
               else {"mode": "none", "verdict": "not_run", "reason": "gate refused"})
    current = registry.current() or base
    after = answer(registry.model_path(current["version"]), config.heldout_prompts, ecfg)
    summary = {
        "escalation_rate_before": _rate(before.escalated),
        "escalation_rate_after": _rate(after.escalated),
        "promoted": result.promoted and shipped["verdict"] == "promote",
        "confidence_before": round(sum(before.confidences) / len(before.confidences), 4),
        "confidence_after": round(sum(after.confidences) / len(after.confidences), 4),
        **common,
        "escalation_reasons_after": _reasons(after),
        "candidate": result.version,
        "model_version": current["version"],
        "gate_failed": result.decision.reasons,
        "rollout": shipped,
        "report": str(result.report_path),
        "flywheel_s": round(time.monotonic() - started, 1),
    }
    log.info("flywheel done", extra=summary)
    return summary
