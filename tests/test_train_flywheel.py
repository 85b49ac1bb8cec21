"""The flywheel function the demo calls: its summary keys, and a round that cannot run leaves the fleet alone."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("trl")

from ebrain.models.tiny import write_tiny_llama
from trainers.adapters.registry import Registry
from trainers.flywheel import FlywheelConfig, run_flywheel
from trainers.settings import TrainerSettings


def test_flywheel_without_teacher_answers_keeps_the_model(tmp_path: Path) -> None:
    tiny = write_tiny_llama(tmp_path / "tiny.gguf")
    settings = TrainerSettings(model=str(tiny), registry_dir=tmp_path / "registry", models_dir=tmp_path / "models",
                               eval_max_tokens=8, min_records=2)
    # The tiny model never ends a turn, so the teacher (the same file) finishes no answer: nothing to teach.
    config = FlywheelConfig(teacher=str(tiny), train_prompts=("What is 1?", "What is 2?"),
                            heldout_prompts=("What is 3?",), teacher_max_tokens=8)
    lines: list[str] = []
    summary = run_flywheel(settings, config, echo=lines.append)
    assert summary["promoted"] is False
    assert summary["escalation_rate_after"] == summary["escalation_rate_before"] == 1.0  # truncated at 8 tokens
    assert summary["teacher_records"] == 0
    assert "need 2" in summary["aborted"]
    assert any("round aborted" in line for line in lines)
    assert Registry(tmp_path / "registry").load()["current"] == "v0"
