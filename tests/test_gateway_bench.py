"""`ebrain bench gateway` end to end on a small stream: the JSON contract and zero loss."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ebrain.bench_cli import app

pytestmark = pytest.mark.integration


def test_bench_gateway_prints_the_result_as_the_last_json_line() -> None:
    result = CliRunner().invoke(app, ["gateway", "--messages", "600", "--publishers", "2", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output.strip().splitlines()[-1])
    assert {"messages", "bridged_msgs_per_s", "raw_msgs_per_s", "ratio", "lost", "p50_ms", "p99_ms"} <= set(out)
    assert (out["messages"], out["lost"], out["raw_lost"]) == (600, 0, 0)
    assert out["bridged_msgs_per_s"] > 0
    assert out["p99_ms"] >= out["p50_ms"] > 0
