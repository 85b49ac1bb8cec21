"""The demo's Fleet on real processes: an `edge run` device (tiny model, the machine's Mosquitto) started,
killed, restarted and stopped by name, each change reported as an event; its /metrics scraped."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path
from typing import Any

import pytest

from ebrain.config import MqttSettings
from ebrain.dashboard.scrape import scrape_once
from ebrain.demo import free_port
from ebrain.fleet import Fleet, ProcSpec
from ebrain.models.tiny import write_tiny_llama

pytestmark = pytest.mark.integration


async def test_fleet_kills_restarts_and_stops_processes_by_name(mqtt_settings: MqttSettings, tmp_path: Path) -> None:
    uid = uuid.uuid4().hex[:8]
    model = write_tiny_llama(tmp_path / "tiny.gguf")
    port = free_port()
    env = {"EBRAIN_STATE_DIR": str(tmp_path), "EBRAIN_TENANT": f"t{uid}", "EBRAIN_METRICS_PORT": str(port),
           "EBRAIN_MQTT__HOST": mqtt_settings.host, "EBRAIN_MQTT__PORT": str(mqtt_settings.port),
           "EBRAIN_MQTT__SESSION_EXPIRY_S": "0", "EBRAIN_N_THREADS": "1"}
    spec = ProcSpec("edge-a", ("edge", "run", "--device", f"d{uid}", "--model", str(model), "--requests", "0",
                               "--forever"), env, ready_timeout_s=60, metrics_port=port)
    events: list[dict[str, Any]] = []
    async with Fleet(tmp_path / "logs", on_line=lambda _n, _o: None, emit=events.append) as fleet:
        await fleet.start([spec])
        assert fleet.running("edge-a")
        await scrape_once(fleet.metrics_targets(), events.append, lambda: 0.0)
        scrape = [e for e in events if e["kind"] == "scrape"]
        assert scrape
        assert scrape[0]["values"]["spool"] == 0

        await fleet.child("edge-a").kill()
        assert not fleet.running("edge-a")
        await fleet.child("edge-a").start()
        assert fleet.running("edge-a")
        with pytest.raises(KeyError):
            fleet.child("nope")
        left = await fleet.wait_finished(["edge-a"], deadline_s=0.5)  # it runs --forever
        assert left == ["edge-a"]
    states = [(e["state"], e.get("rc")) for e in events if e["kind"] == "proc"]
    assert states == [("starting", None), ("ready", None), ("killed", -signal.SIGKILL), ("restarting", None),
                      ("starting", None), ("ready", None), ("stopped", None)]
