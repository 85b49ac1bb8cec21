"""The fleet simulator: workload parsing and assignment, and `ebrain edge simulate` on the real Mosquitto."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from ebrain.models.tiny import write_tiny_llama
from edge.simulate import Task, assign, load_workload

ROOT = Path(__file__).resolve().parents[1]


def test_workload_lines_and_assignment(tmp_path: Path) -> None:
    path = tmp_path / "w.jsonl"
    path.write_text(
        '{"prompt": "a"}\n\n{"prompt": "b", "tags": ["cloud"], "max_tokens": 4}\n{"prompt": "c", "device": 0}\n')
    tasks = load_workload(path)
    assert tasks[1] == Task("b", ("cloud",), 4, None)
    assert [[t.prompt for t in share] for share in assign(tasks, 2)] == [["a", "c"], ["b"]]
    path.write_text('{"tags": []}\n')
    with pytest.raises(ValueError, match=r"w\.jsonl:1"):
        load_workload(path)


@pytest.mark.integration
def test_simulate_prints_one_line_per_outcome_and_a_summary(tmp_path: Path) -> None:
    model = write_tiny_llama(tmp_path / "tiny.gguf")
    workload = tmp_path / "w.jsonl"
    lines = [{"prompt": f"question {i}", "max_tokens": 6, **({"tags": ["cloud"]} if i == 4 else {})} for i in range(6)]
    workload.write_text("\n".join(json.dumps(line) for line in lines))
    env = {**os.environ, "EBRAIN_STATE_DIR": str(tmp_path / "state"), "EBRAIN_TENANT": f"t{uuid.uuid4().hex[:8]}",
           "EBRAIN_MIN_CONFIDENCE": "0", "EBRAIN_ESCALATE_ON_TRUNCATION": "false", "EBRAIN_REPLY_TIMEOUT_S": "0.2",
           "EBRAIN_N_THREADS": "1", "EBRAIN_MQTT__SESSION_EXPIRY_S": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "ebrain", "edge", "simulate", "--devices", "3", "--workload", str(workload),
         "--model", str(model)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    outcomes = [line for line in out if line["event"] == "outcome"]
    assert len(outcomes) == 6
    assert {line["device"] for line in outcomes} == {"sim-0", "sim-1", "sim-2"}
    summary = out[-1]
    assert summary["event"] == "summary"
    assert summary["sent"] == 6
    assert summary["answered_local"] == 5  # no cloud here: the escalated one times out, clearly
    assert summary["failed"] == 1
