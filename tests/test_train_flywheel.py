"""The flywheel function the demo calls: its summary keys, and a round that cannot run leaves the fleet alone."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("trl")

from ebrain.models.tiny import write_tiny_llama
from trainers import workload
from trainers.adapters.registry import Registry
from trainers.core import gate
from trainers.flywheel import FlywheelConfig, _rollout, run_flywheel
from trainers.round import RoundResult
from trainers.settings import TrainerSettings


def test_flywheel_without_teacher_answers_keeps_the_model(tmp_path: Path) -> None:
    tiny = write_tiny_llama(tmp_path / "tiny.gguf")
    settings = TrainerSettings(model=str(tiny), registry_dir=tmp_path / "registry", models_dir=tmp_path / "models",
                               eval_max_tokens=8, min_records=2)
    # The tiny model never ends a sentence, so the teacher (the same file) has no whole sentence to teach.
    config = FlywheelConfig(teacher=str(tiny), train_prompts=("What is 1?", "What is 2?"),
                            heldout_prompts=("What is 3?",), teacher_max_tokens=8, fleet=None)
    lines: list[str] = []
    summary = run_flywheel(settings, config, echo=lines.append)
    assert summary["promoted"] is False
    assert summary["escalation_rate_after"] == summary["escalation_rate_before"] == 1.0  # truncated at 8 tokens
    assert summary["teacher_records"] == 0
    assert summary["escalation_reasons_before"] == {"truncated": 1}
    assert "need 2" in summary["aborted"]
    assert any("round aborted" in line for line in lines)
    assert Registry(tmp_path / "registry").load()["current"] == "v0"


def test_without_a_fleet_a_gate_pass_promotes_and_says_so(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    for name in ("base", "cand"):
        (tmp_path / name).write_bytes(name.encode() * 10)
    registry.register(tmp_path / "base", parent=None, status="base")
    registry.register(tmp_path / "cand", parent="v0", status="candidate")
    metrics = gate.EvalMetrics(perplexity=2.0, confidence=0.5)
    result = RoundResult("v1", "v0", True, metrics, metrics, gate.GateDecision(True))
    shipped = _rollout(TrainerSettings(registry_dir=tmp_path / "registry"), FlywheelConfig(fleet=None), registry,
                       result, teacher=tmp_path / "teacher.gguf", state_dir=tmp_path, echo=lambda _: None,
                       rollout=None)
    assert shipped["mode"] == "gate_only"
    assert shipped["verdict"] == "promote"
    assert registry.load()["current"] == "v1"
    assert registry.entry("v1")["history"][-1]["decision"]["reason"] == shipped["reason"]


def test_the_heldout_workload_is_disjoint_from_training() -> None:
    train, held = workload.split()
    assert not set(train) & set(held)
    assert len(held) >= 20  # resolution: one prompt is at most 5 % of the rate
    for subject in workload.heldout_subjects():
        assert not any(subject in p for p in train)
    assert {p.split(" a ")[0] for p in held} <= {p.split(" a ")[0] for p in train}  # same question types
