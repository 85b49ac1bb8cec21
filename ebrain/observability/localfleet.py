"""A small fleet as local processes with /metrics on free ports, scraped while it runs.

Used by tests/test_metrics.py (every component's documented series exist and move) and by
`python -m docs.render_metrics` (the PNG in the README). Each component is its own `ebrain` process serving its
own registry (EBRAIN_METRICS_PORT), exactly as it runs on a laptop; brokers are the caller's.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from ebrain.procs import ChildProcess

Samples = dict[str, float]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse(text: str) -> Samples:
    """Prometheus text exposition -> {'name{a="x",b="y"}': value}, labels sorted."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


def scrape(port: int, timeout_s: float = 5.0) -> Samples:
    """GET http://127.0.0.1:PORT/metrics, parsed."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s) as response:
        return parse(response.read().decode())


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of series `name` whose labels include `labels`."""
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for key, v in samples.items()
               if key.split("{", 1)[0] == name and all(w in key for w in want))


@dataclass
class FleetRun:
    """What a run saw: per component, the scrape at ready, the one at the end, and timed samples between."""

    ports: dict[str, int]
    first: dict[str, Samples] = field(default_factory=dict)
    last: dict[str, Samples] = field(default_factory=dict)
    series: list[tuple[float, str, Samples]] = field(default_factory=list)
    outcomes: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class FleetConfig:
    """Where the brokers are, which model, how much work, where to put logs and data."""

    kafka_bootstrap: str
    model: Path
    work_dir: Path
    devices: int = 1
    requests: int = 4
    ingest: bool = False
    sample_every_s: float = 1.0
    deadline_s: float = 180.0
    threads: int = 1
    mqtt_port: int = 1883
    telemetry_interval_s: float = 2.0


def _envs(config: FleetConfig, ports: dict[str, int]) -> dict[str, dict[str, str]]:
    uid = uuid.uuid4().hex[:8]
    base = {"EBRAIN_KAFKA_BOOTSTRAP": config.kafka_bootstrap, "EBRAIN_STATE_DIR": str(config.work_dir / "state"),
            "EBRAIN_MQTT__SESSION_EXPIRY_S": "0", "EBRAIN_N_THREADS": str(config.threads),
            "EBRAIN_MQTT__PORT": str(config.mqtt_port)}
    return {
        "gateway": {**base, "EBRAIN_METRICS_PORT": str(ports["gateway"]), "EBRAIN_CLIENT_ID": f"gw-{uid}",
                    "EBRAIN_SHARE_GROUP": f"gw-{uid}", "EBRAIN_DOWNLINK_GROUP": f"gw-down-{uid}"},
        "cloud": {**base, "EBRAIN_METRICS_PORT": str(ports["cloud"]), "EBRAIN_GROUP_ID": f"cloud-{uid}"},
        "ingest": {**base, "EBRAIN_METRICS_PORT": str(ports.get("ingest", 0)), "EBRAIN_INGEST_GROUP_ID": f"in-{uid}",
                   "EBRAIN_DATA_DIR": str(config.work_dir / "dataset"), "EBRAIN_NER_MODE": "off"},
        # Any model passes the confidence bar, so both routes run (cloud tags escalate the rest).
        "edge": {**base, "EBRAIN_TENANT": f"t{uid}",
                 "EBRAIN_MIN_CONFIDENCE": "0", "EBRAIN_ESCALATE_ON_TRUNCATION": "false",
                 "EBRAIN_TELEMETRY_INTERVAL_S": str(config.telemetry_interval_s)},
    }


async def _sample(run: FleetRun, stop: asyncio.Event, every_s: float, started: float) -> None:
    while not stop.is_set():
        for name, port in run.ports.items():
            with contextlib.suppress(OSError):
                run.series.append((time.monotonic() - started, name, await asyncio.to_thread(scrape, port)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


async def run_fleet(config: FleetConfig) -> FleetRun:
    """Gateway, cloud worker (llama backend), optional ingest worker and `devices` edge processes (`edge-<i>`),
    until every device printed its `done` line; each /metrics scraped at ready, during the run and at the end.
    """
    names = ["gateway", "cloud", *(["ingest"] if config.ingest else []), *(f"edge-{i}" for i in range(config.devices))]
    run = FleetRun(ports={n: free_port() for n in names})
    envs = _envs(config, run.ports)
    logs = config.work_dir / "logs"
    stop = asyncio.Event()
    started = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        servers = [await stack.enter_async_context(ChildProcess(n, args, log_dir=logs, env=envs[n])) for n, args in (
            ("gateway", ["gateway", "run"]), ("cloud", ["cloud", "worker", "--model", str(config.model)]),
            *([("ingest", ["data", "ingest"])] if config.ingest else []))]
        await asyncio.gather(*(s.wait_ready(config.deadline_s) for s in servers))
        run.first = {n: await asyncio.to_thread(scrape, p) for n, p in run.ports.items() if not n.startswith("edge")}
        sampler = asyncio.create_task(_sample(run, stop, config.sample_every_s, started))
        done: list[asyncio.Event] = []
        for i in range(config.devices):
            env = {**envs["edge"], "EBRAIN_METRICS_PORT": str(run.ports[f"edge-{i}"])}
            done.append(asyncio.Event())
            await stack.enter_async_context(ChildProcess(
                f"edge-{i}", ["edge", "run", "--device", f"edge-{i}", "--model", str(config.model), "--requests",
                              str(config.requests), "--offset", str(i), "--forever"],
                log_dir=logs, env=env, on_line=_line_handler(run, done[-1])))
        await asyncio.wait_for(asyncio.gather(*(d.wait() for d in done)), config.deadline_s)
        await asyncio.sleep(config.sample_every_s)  # one more sample after the last reply
        run.last = {n: await asyncio.to_thread(scrape, p) for n, p in run.ports.items()}
        stop.set()
        await sampler
    return run


def _line_handler(run: FleetRun, done: asyncio.Event) -> Callable[[str, dict[str, Any]], None]:
    def on_line(_name: str, obj: dict[str, Any]) -> None:
        if obj.get("event") == "outcome":
            run.outcomes.append(obj)
        elif obj.get("event") == "done":
            done.set()

    return on_line
