"""The `ebrain` command: every command and group answers --help; schemas export writes one file per type."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from ebrain.cli import _register, app
from schemas import PAYLOAD_TYPES

runner = CliRunner()
_register()


def _command_paths() -> list[list[str]]:
    root = typer.main.get_command(app)
    paths: list[list[str]] = []

    def walk(command: typer.core.TyperCommand | typer.core.TyperGroup, prefix: list[str]) -> None:
        paths.append(prefix)
        if isinstance(command, typer.core.TyperGroup):
            for name, sub in command.commands.items():
                walk(sub, [*prefix, name])

    walk(root, [])
    return paths


@pytest.mark.parametrize("path", _command_paths(), ids=lambda p: " ".join(p) or "ebrain")
def test_every_command_has_help(path: list[str]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_the_expected_commands_exist() -> None:
    names = {" ".join(p) for p in _command_paths()}
    for expected in ("stack up", "stack down", "stack status", "edge run", "gateway run", "cloud worker",
                     "demo", "schemas export", "models pull"):
        assert expected in names


def test_schemas_export_writes_one_json_schema_per_type(tmp_path: Path) -> None:
    result = runner.invoke(app, ["schemas", "export", str(tmp_path)])
    assert result.exit_code == 0, result.output
    files = sorted(tmp_path.glob("*.schema.json"))
    assert len(files) == len(PAYLOAD_TYPES)
    for file in files:
        doc = json.loads(file.read_text())
        assert doc["type"] == "object"
        assert {"id", "type", "tenant", "device", "trace_id", "data"} <= set(doc["required"])


def test_demo_flywheel_without_the_train_extra_stops_before_starting_anything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util  # noqa: PLC0415

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "peft" else real(name, *a))
    result = runner.invoke(app, ["demo", "--flywheel", "--json", "--state-dir", str(tmp_path / "state")])
    assert result.exit_code == 2, result.output
    assert "ebrain demo --flywheel needs peft: pip install -e '.[train]'" in result.output
    assert not (tmp_path / "state").exists()  # no stack, no model fetch, no fleet
