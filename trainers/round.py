"""One training round: records -> SFT (+ DPO) -> merge -> GGUF -> quantize -> evaluate both -> gate -> registry.

Adapters do the work; the decisions (pairs, split, gate, report) come from trainers.core.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.core.policy import PolicyConfig
from trainers.adapters.evaluate import EvalConfig, EvalItem, Similarity, evaluate, overlap_similarity
from trainers.adapters.registry import Registry
from trainers.core import gate, pairs, quant, report
from trainers.settings import TrainerSettings

log = logging.getLogger(__name__)


class NotEnoughDataError(ValueError):
    """Invalid input for a round: too few teacher-answered records to train and hold some out."""


@dataclass(slots=True)
class RoundResult:
    """What a round produced: the registered version, the gate's decision and the numbers behind it."""

    version: str
    parent: str | None
    promoted: bool
    current: gate.EvalMetrics
    candidate: gate.EvalMetrics
    decision: gate.GateDecision
    training: dict[str, Any] = field(default_factory=dict)
    report_path: Path | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-friendly summary (CLI output, logs)."""
        return {"version": self.version, "parent": self.parent, "promoted": self.promoted,
                "current": _as_dict(self.current),
                "candidate": _as_dict(self.candidate), "failed": self.decision.reasons,
                "training": self.training, "report": str(self.report_path) if self.report_path else None}


def _as_dict(m: gate.EvalMetrics) -> dict[str, Any]:
    return {k: getattr(m, k) for k in ("perplexity", "confidence", "similarity", "regression", "escalation_rate")}


def ensure_base(settings: TrainerSettings, registry: Registry) -> dict[str, Any]:
    """The registry's current version; on first use the configured model is registered as v0 (status base)."""
    current = registry.current()
    if current is not None:
        return current
    from ebrain.models import resolve_model  # noqa: PLC0415

    path = resolve_model(settings.model, settings.models_dir)
    return registry.register(path, parent=None, status="base", extra={"source": settings.model})


def _knobs(settings: TrainerSettings, steps: int, learning_rate: float) -> Any:
    from trainers.adapters.train import TrainConfig  # noqa: PLC0415

    k = settings.train
    return TrainConfig(max_steps=steps, learning_rate=learning_rate, batch_size=k.batch_size, lora_r=k.lora_r,
                       lora_alpha=k.lora_alpha, max_length=k.max_length, dpo_beta=k.dpo_beta, seed=k.seed)


def train_candidate(settings: TrainerSettings, base_gguf: Path, sft_train: Sequence[pairs.SftExample],
                    dpo_train: Sequence[pairs.DpoPair], out: Path) -> dict[str, Any]:
    """Train, merge, convert and quantize into `out`; returns the training summary."""
    from trainers.adapters import export, hf, train  # noqa: PLC0415

    model = hf.load_gguf(base_gguf, threads=settings.threads)
    k = settings.train
    model, sft_stats = train.sft(model, sft_train, _knobs(settings, k.max_steps, k.learning_rate))
    summary: dict[str, Any] = {f"sft_{k}": v for k, v in sft_stats.summary().items() if k != "kind"}
    if settings.train.dpo and dpo_train:
        model, dpo_stats = train.dpo(model, dpo_train, _knobs(settings, k.dpo_steps, k.dpo_learning_rate))
        summary |= {f"dpo_{k}": v for k, v in dpo_stats.summary().items() if k != "kind"}
    if (warning := quant.erases_finetune(settings.quantization, export.file_type(base_gguf))) is not None:
        log.warning("export quantization erases the fine-tune", extra={"why": warning})
        summary["quantization_warning"] = warning
    with tempfile.TemporaryDirectory(prefix="ebrain-export-") as tmp:
        hf_dir = hf.save_dir(model, Path(tmp) / "hf")
        del model
        wide = export.convert(hf_dir, base_gguf, Path(tmp) / "model-wide.gguf", tools_dir=settings.tools_dir,
                              outtype=settings.convert_outtype)
        if settings.quantization in ("f32", "f16") and settings.quantization == settings.convert_outtype:
            export.copy_atomic(wide, out)
        else:
            export.quantize(wide, out, settings.quantization, threads=settings.threads)
    return summary


def run_round(settings: TrainerSettings, rows: Sequence[Mapping[str, Any]], *, data_manifest_id: str | None,
              similarity: tuple[str, Similarity] = ("token_overlap", overlap_similarity),
              registry: Registry | None = None,
              heldout: Sequence[Mapping[str, Any]] | None = None) -> RoundResult:
    """Train a candidate on `rows`, gate it against the registry's current version and register it.

    `heldout` (optional) is a fixed evaluation set used instead of a split of `rows` (a golden set kept across
    rounds). The candidate is registered either way: status 'candidate' (ready for a canary) or 'rejected'.
    Raises NotEnoughDataError, trainers.adapters.train.TrainingDivergedError, export.ExportError.
    """
    registry = registry or Registry(settings.registry_dir, settings.model_id)
    cfg = pairs.PairConfig(heldout_fraction=settings.heldout_fraction)
    sft_all = pairs.sft_examples(rows, cfg)
    if len(sft_all) < settings.min_records:
        raise NotEnoughDataError(f"{len(sft_all)} teacher-answered records; need {settings.min_records}")
    if heldout is None:
        sft_train, sft_held = pairs.split(sft_all, cfg)
    else:
        sft_train, sft_held = sft_all, pairs.sft_examples(heldout, cfg)
    held_ids = {e.record_id for e in sft_held}
    dpo_train = [p for p in pairs.dpo_pairs(rows, cfg) if p.record_id not in held_ids]
    regression = [str(r["prompt"]) for r in rows if r.get("kind") == "local" and r.get("prompt")][:8]
    base = ensure_base(settings, registry)
    base_path = registry.model_path(base["version"])
    version = registry.next_version()
    with tempfile.TemporaryDirectory(prefix="ebrain-round-") as tmp:
        candidate_path = Path(tmp) / "model.gguf"
        training = train_candidate(settings, base_path, sft_train, dpo_train, candidate_path)
        training |= {"sft_train": len(sft_train), "heldout": len(sft_held), "dpo_pairs": len(dpo_train)}
        ecfg = EvalConfig(max_tokens=settings.eval_max_tokens, threads=settings.eval_threads,
                          policy=PolicyConfig(min_confidence=settings.min_confidence))
        items = [EvalItem(e.prompt, e.answer) for e in sft_held]
        current = evaluate(base_path, items, regression, ecfg, similarity[1])
        candidate = evaluate(candidate_path, items, regression, ecfg, similarity[1])
        decision = gate.decide(current, candidate, settings.gate.config())
        text = report.render(version=version, parent=base["version"],
                             data={"data manifest": data_manifest_id, "records": len(rows)}, training=training,
                             current=current, candidate=candidate, decision=decision, similarity=similarity[0])
        entry = registry.register(candidate_path, parent=base["version"],
                                  status="candidate" if decision.promote else "rejected",
                                  metrics={"current": _as_dict(current), "candidate": _as_dict(candidate)},
                                  data_manifest_id=data_manifest_id, extra={"training": training}, report=text)
    log.info("round done", extra={"version": entry["version"], "promote": decision.promote,
                                  "failed": decision.reasons})
    return RoundResult(entry["version"], base["version"], decision.promote, current, candidate, decision,
                       training, registry.root / entry["version"] / "report.md")
