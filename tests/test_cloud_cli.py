"""`ebrain cloud worker`: settings from the environment, --help, and a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from cloud.cli import app
from cloud.settings import CloudSettings
from ebrain.config import KafkaSettings


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EBRAIN_KAFKA__BOOTSTRAP", "kafka:9092")
    monkeypatch.setenv("EBRAIN_MAX_CONCURRENCY", "4")
    monkeypatch.setenv("EBRAIN_MODEL", "tiny")
    monkeypatch.setenv("EBRAIN_HF_TOKEN", "hf_secret")
    settings = CloudSettings()
    assert settings.kafka.bootstrap == "kafka:9092"
    assert (settings.max_concurrency, settings.model, settings.metrics_port) == (4, "tiny", 0)
    assert settings.group_id == "ebrain-cloud"
    assert "hf_secret" not in repr(settings)
    with pytest.raises(ValidationError):
        settings.model = "smollm2"  # type: ignore[misc]


def test_help_lists_the_worker() -> None:
    result = CliRunner().invoke(app, ["worker", "--help"])
    assert result.exit_code == 0
    assert "--model" in result.output


@pytest.mark.integration
async def test_worker_runs_until_sigterm(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    env = {**os.environ, "EBRAIN_KAFKA_BOOTSTRAP": kafka_settings.bootstrap, "EBRAIN_STATE_DIR": str(tmp_path),
           "EBRAIN_SESSION_TIMEOUT_MS": "2000", "EBRAIN_HEARTBEAT_INTERVAL_MS": "500", "EBRAIN_N_CTX": "512"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ebrain", "cloud", "worker", "--model", "tiny",
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    events: list[str] = []
    try:
        async with asyncio.timeout(60):
            while "cloud worker started" not in events:
                line = await proc.stderr.readline()
                assert line, f"worker exited early: {events}"
                if line.startswith(b"{"):
                    events.append(json.loads(line)["event"])
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            rest = await proc.stderr.read()
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    events += [json.loads(line)["event"] for line in rest.splitlines() if line.startswith(b"{")]
    assert events.index("cloud worker stopped") > events.index("cloud worker started")


def test_router_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EBRAIN_BACKEND", "router")
    monkeypatch.setenv("EBRAIN_BACKENDS", '[{"name": "vllm", "url": "http://vllm:8000", "model": "smollm2", '
                                          '"max_concurrency": 32, "api_key": "sk-x"}, {"name": "llama", '
                                          '"url": "http://llama:8080", "model": "llama", "tier": "cpu"}]')
    monkeypatch.setenv("EBRAIN_REDIS_URL", "redis://redis:6379/0")
    monkeypatch.setenv("EBRAIN_CACHE__THRESHOLD", "0.95")
    monkeypatch.setenv("EBRAIN_RATELIMIT__ON_REDIS_ERROR", "closed")
    settings = CloudSettings()
    assert settings.backend == "router"
    assert [(b.name, b.tier, b.max_concurrency) for b in settings.backends] == [("vllm", "gpu", 32),
                                                                                ("llama", "cpu", 8)]
    assert settings.redis_url == "redis://redis:6379/0"
    assert (settings.cache.threshold, settings.ratelimit.on_redis_error) == (0.95, "closed")
    assert "sk-x" not in repr(settings)


def test_unknown_backend_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["worker", "--backend", "bogus"])
    assert result.exit_code == 2
    assert "'llama' or 'router'" in result.output
