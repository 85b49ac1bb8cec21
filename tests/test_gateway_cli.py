"""`ebrain gateway run`: help, settings from the environment, and a clean stop on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ebrain.config import KafkaSettings
from gateway.cli import app, load_settings


def test_help_lists_run() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "run" in result.output


def test_provision_writes_files_and_prints_no_secret(tmp_path: Path) -> None:
    inventory = tmp_path / "devices.csv"
    inventory.write_text("acme,dev-1\n")
    out = tmp_path / "auth"
    result = CliRunner().invoke(app, ["provision", str(inventory), "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert (summary["devices"], summary["new_users"]) == (1, 2)
    passwords = json.loads((out / "credentials.json").read_text())["users"].values()
    assert not [p for p in passwords if p in result.output]
    bad = tmp_path / "bad.csv"
    bad.write_text("acme\n")
    assert CliRunner().invoke(app, ["provision", str(bad), "--out", str(out)]).exit_code == 2


def test_kafka_bootstrap_env_overrides_nested_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EBRAIN_KAFKA__LINGER_MS", "7")
    monkeypatch.setenv("EBRAIN_MQTT__PORT", "1999")
    monkeypatch.setenv("EBRAIN_SHARE_GROUP", "blue")
    settings = load_settings({"EBRAIN_KAFKA_BOOTSTRAP": "kafka-1:9092"})
    assert (settings.kafka.bootstrap, settings.kafka.linger_ms) == ("kafka-1:9092", 7)
    assert (settings.mqtt.port, settings.share_group) == (1999, "blue")


@pytest.mark.integration
def test_run_stops_cleanly_on_sigterm(kafka_settings: KafkaSettings) -> None:
    uid = uuid.uuid4().hex[:10]
    env = {
        **os.environ,
        "EBRAIN_KAFKA_BOOTSTRAP": kafka_settings.bootstrap,
        "EBRAIN_CLIENT_ID": f"gw-cli-{uid}",
        "EBRAIN_SHARE_GROUP": f"gw-cli-{uid}",
        "EBRAIN_DOWNLINK_GROUP": f"gw-cli-{uid}",
        "EBRAIN_MQTT__SESSION_EXPIRY_S": "0",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", "from gateway.cli import app; app()", "run"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    events: list[str] = []
    deadline = time.monotonic() + 30
    try:
        for line in proc.stderr:
            events.append(json.loads(line)["event"])
            if events[-1] == "gateway ready" or time.monotonic() > deadline:
                break
        assert "gateway ready" in events
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        events += [json.loads(line)["event"] for line in proc.stderr]
        assert "gateway stopped" in events
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
