"""A full disk at the edge: requests are refused with `spool_io_error`, counted and logged; the agent lives on.

The device is offline (a broker port nobody listens on), so every message must go through the spool. The disk
fills in a child process (RLIMIT_FSIZE 0: every file write fails with EFBIG, which SQLite reports as `disk I/O
error`; CPython ignores SIGXFSZ), so the test process's own files are untouched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ebrain.models.tiny import write_tiny_llama
from ebrain.stack.private import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CHILD = r"""
import asyncio, json, resource, sys
from pathlib import Path
from prometheus_client import REGISTRY
from edge.app import device_stack, load_engine
from edge.settings import EdgeSettings
from schemas import InferenceRequest

def metric(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0

async def main(model: str) -> None:
    settings = EdgeSettings()
    engine = await load_engine(settings, Path(model), "tiny", "t1")
    async with engine, device_stack(settings, engine, settings.device) as agent:
        def ask(n, tags=()):
            return agent.handle(InferenceRequest(request_id=f"r{n}", prompt=f"p{n}", tags=tags, max_tokens=4))
        outcomes = [await ask(0)]  # the spool works: answered locally, spooled
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))  # the disk is full from here
        outcomes += [await ask(1), await ask(2, ("cloud",))]  # a local answer, an escalation
        await agent.publish_telemetry()  # must not raise either
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space again
        outcomes.append(await ask(3))
        print(json.dumps({
            "outcomes": [[o.result.request_id, o.result.status, o.result.reason] for o in outcomes],
            "io_errors": metric("ebrain_edge_spool_io_errors_total"),
            "rejected": metric("ebrain_edge_rejected_total", reason="spool_io_error"),
            "spooled": len(agent._uplink.spool),
        }), flush=True)

asyncio.run(main(sys.argv[1]))
"""


def test_full_disk_refuses_requests_with_a_reason_and_the_agent_keeps_running(tmp_path: Path) -> None:
    model = write_tiny_llama(tmp_path / "tiny.gguf")
    env = {**os.environ, "EBRAIN_MQTT__PORT": str(free_port()), "EBRAIN_CONNECT_GRACE_S": "0",
           "EBRAIN_STATE_DIR": str(tmp_path / "state"), "EBRAIN_TENANT": "disk-full", "EBRAIN_DEVICE": "d1",
           "EBRAIN_MIN_CONFIDENCE": "0", "EBRAIN_ESCALATE_ON_TRUNCATION": "false", "EBRAIN_DRAIN_TIMEOUT_S": "0",
           "EBRAIN_N_THREADS": "1", "EBRAIN_TELEMETRY_INTERVAL_S": "3600"}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(model)], env=env, capture_output=True, text=True,
                          timeout=90, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["outcomes"] == [
        ["r0", "ok", report["outcomes"][0][2]],
        ["r1", "rejected", "spool_io_error"],
        ["r2", "rejected", "spool_io_error"],
        ["r3", "ok", report["outcomes"][3][2]],
    ], report
    # r1's result, r2's escalation and the telemetry could not be written: each counted, two requests refused.
    assert report["io_errors"] == 3, report
    assert report["rejected"] == 2, report
    assert report["spooled"] == 2, report  # r0 and r3: nothing half-written is left behind
    assert "spool write failed" in proc.stderr
