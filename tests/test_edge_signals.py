"""`ebrain edge run` stops promptly on SIGTERM while a request waits for its cloud reply (reply_timeout_s 120 s).

Online, the escalation reached the broker and nobody answers; offline, it waits in the spool, and must still be
there after the stop (the shutdown drain, up to drain_timeout_s, is skipped on a signal).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ebrain.config import MqttSettings
from ebrain.models.tiny import write_tiny_llama
from ebrain.mqtt import MqttClient
from ebrain.stack.private import free_port
from schemas import Escalation, decode
from schemas.topics import mqtt_uplink

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]
STOP_WITHIN_S = 5.0


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("models") / "tiny.gguf")


def _edge_run(tmp_path: Path, model: Path, tenant: str, mqtt_port: int) -> subprocess.Popen[str]:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "Please ask the cloud.", "tags": ["cloud"], "max_tokens": 4}) + "\n")
    env = {**os.environ, "EBRAIN_MQTT__PORT": str(mqtt_port), "EBRAIN_MODEL": str(model),
           "EBRAIN_STATE_DIR": str(tmp_path / "state"), "EBRAIN_TENANT": tenant, "EBRAIN_DEVICE": "d1",
           "EBRAIN_N_THREADS": "1", "EBRAIN_CONNECT_GRACE_S": "3", "EBRAIN_REPLY_TIMEOUT_S": "120",
           "EBRAIN_TELEMETRY_INTERVAL_S": "3600", "EBRAIN_MQTT__SESSION_EXPIRY_S": "0"}
    return subprocess.Popen(
        [sys.executable, "-c", "from edge.cli import app; app()", "run", "--prompts", str(prompts),
         "--requests", "1", "--log-level", "INFO"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _stop_and_time(proc: subprocess.Popen[str]) -> tuple[float, str]:
    """SIGTERM, then the seconds until the process exited (exit status 0 required) and its stdout."""
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    took = time.monotonic() - start
    assert proc.returncode == 0, err[-3000:]
    return took, out


def _stopped(out: str) -> dict[str, object]:
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events] == ["ready", "stopped"], events  # no outcome: the wait was cut short
    return events[-1]


async def test_sigterm_while_waiting_for_the_cloud_reply_stops_at_once(
    mqtt_settings: MqttSettings, tiny_model: Path, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    tenant = f"sig-{uuid.uuid4().hex[:8]}"
    async with MqttClient(mqtt_settings, client_id=f"watch-{tenant}", clean_start=True) as watcher:
        await watcher.subscribe(mqtt_uplink(tenant, "d1", "escalation"), qos=1)
        procs.append(proc := _edge_run(tmp_path, tiny_model, tenant, mqtt_settings.port))
        async with asyncio.timeout(60):  # the escalation is out: the device now waits for a reply
            async for message in watcher.messages():
                assert isinstance(decode(message.payload).data, Escalation)
                break
    took, out = _stop_and_time(proc)
    assert took < STOP_WITHIN_S, f"took {took:.1f}s to stop"
    assert _stopped(out) == {"event": "stopped", "signal": "SIGTERM", "device": "d1", "sent": 1}


def _spooled(path: Path) -> list[bytes]:
    if not path.exists():
        return []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        try:
            return [bytes(row[0]) for row in db.execute("SELECT payload FROM spool ORDER BY seq")]
        except sqlite3.OperationalError:  # the schema is not there yet
            return []


def test_sigterm_while_offline_stops_at_once_and_keeps_the_spool(
    tiny_model: Path, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    tenant = f"sig-off-{uuid.uuid4().hex[:8]}"
    procs.append(proc := _edge_run(tmp_path, tiny_model, tenant, free_port()))  # nobody listens there
    spool = tmp_path / "state" / "spool" / f"{tenant}-d1.db"
    deadline = time.monotonic() + 60
    while not (rows := _spooled(spool)):  # the escalation is spooled: the device now waits for a reply
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "nothing spooled"
        time.sleep(0.1)
    took, out = _stop_and_time(proc)
    assert took < STOP_WITHIN_S, f"took {took:.1f}s to stop (drain_timeout_s is 30 s)"
    _stopped(out)
    assert _spooled(spool) == rows  # kept for the next start
    assert isinstance(decode(rows[0]).data, Escalation)
