"""The main job: the whole system on the embedded default, as separate processes, with a ledger at the end.

The fleet: gateway, cloud worker (the backend EBRAIN_BACKEND configures: llama.cpp in process by default, or
the router in front of vLLM and a CPU replica), the ingest worker (when the data extra is installed) and N
`edge run` devices. Every event goes to a Board (live dashboard or plain lines, and the report's record).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ebrain.dashboard.scrape import Scraper, scrape_once
from ebrain.dashboard.view import Board
from ebrain.demo_ingest import dataset_records, missing_for_ingest, offsets, wait_drained
from ebrain.fleet import Fleet, ProcSpec
from ebrain.summary import summarize

# What runs beside the requests, on the live fleet: e.g. a chaos scenario's inject, hold, clear.
During = Callable[[Fleet], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class DemoConfig:
    devices: int = 3
    requests: int = 4
    model: str = "smollm2"
    tenant: str = "demo"
    state_dir: Path = Path(".ebrain")
    device_threads: int = 1
    reply_timeout_s: float = 180.0
    deadline_s: float = 900.0
    ingest: bool = True
    ingest_group: str = "ebrain-demo-ingest"
    drain_timeout_s: float = 60.0
    scrape_interval_s: float = 1.0

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "dataset"


# The modules each fleet role imports, and the extra that brings them.
FLEET_NEEDS = {"llama_cpp": "edge", "paho": "edge", "aiokafka": "gateway", "faststream": "cloud", "redis": "cloud"}


def missing_for_fleet() -> str | None:
    """None when gateway, cloud worker and devices can run here; else what is missing and how to install it."""
    import importlib.util  # noqa: PLC0415

    missing = {name: extra for name, extra in FLEET_NEEDS.items() if importlib.util.find_spec(name) is None}
    if not missing:
        return None
    extras = ",".join(sorted(set(missing.values())))
    return (f"ebrain demo needs {', '.join(missing)}: pip install -e '.[{extras}]' "
            f"(or `make demo`, which installs what the demo runs)")


# What the flywheel's training round imports (LoRA SFT and DPO on CPU torch); all from the train extra.
FLYWHEEL_NEEDS = ("torch", "transformers", "peft", "trl", "datasets")


def missing_for_flywheel() -> str | None:
    """None when `--flywheel` can train here; else what is missing and how to install it (checked before starting)."""
    import importlib.util  # noqa: PLC0415

    missing = [name for name in FLYWHEEL_NEEDS if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return (f"ebrain demo --flywheel needs {', '.join(missing)}: pip install -e '.[train]' "
            f"(or `make demo-flywheel`)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def step(board: Board, name: str) -> Iterator[None]:
    """A long step: a spinner on the dashboard, a line in plain mode, its duration in the report."""
    board.emit({"kind": "step", "name": name, "phase": "start"})
    try:
        yield
    finally:
        board.emit({"kind": "step", "name": name, "phase": "end"})


def fleet_specs(config: DemoConfig, model_path: Path, env: dict[str, str], ingest: bool) -> list[ProcSpec]:
    """Services first (gateway, cloud, ingest), then the devices; each with its own metrics port."""
    base = {**env, "EBRAIN_STATE_DIR": str(config.state_dir)}

    def spec(name: str, args: list[str], ready_s: float | None, **extra: str) -> ProcSpec:
        port = free_port()
        return ProcSpec(name, tuple(args), {**base, "EBRAIN_METRICS_PORT": str(port), **extra}, ready_s, port)

    # The gateway bridges this demo's tenant only: on a shared MQTT broker, other tenants' traffic would otherwise
    # reach this demo's cloud worker and queue ahead of its own escalations.
    specs = [spec("gateway", ["gateway", "run"], 60, EBRAIN_TENANTS=json.dumps([config.tenant])),
             spec("cloud", ["cloud", "worker", "--model", str(model_path)], 180)]
    if ingest:
        specs.append(spec("ingest", ["data", "ingest", "--data-dir", str(config.data_dir)], 180,
                          EBRAIN_INGEST_GROUP_ID=config.ingest_group))
    device_env = {"EBRAIN_N_THREADS": str(config.device_threads), "EBRAIN_TENANT": config.tenant,
                  "EBRAIN_REPLY_TIMEOUT_S": str(config.reply_timeout_s)}
    specs += [spec(f"edge-{i}", ["edge", "run", "--device", f"edge-{i}", "--model", str(model_path),
                                 "--requests", str(config.requests), "--offset", str(i)], None, **device_env)
              for i in range(config.devices)]
    return specs


async def run_demo(config: DemoConfig, board: Board, env: dict[str, str], *,
                   during: During | None = None) -> dict[str, Any]:
    """Start the fleet, wait until every device is done (and `during(fleet)`, e.g. a chaos scenario, returned),
    let ingestion catch up, stop everything; return the summary.

    `during` runs on the live fleet once the devices started: `fleet.child("gateway").kill()` then `.start()`
    (any of gateway, cloud, ingest, edge-i) are the steps of ebrain.chaos's process scenarios; the ledger in the
    summary (`lost`) and the report's process history show what the fault did. Raises RuntimeError naming the
    log of a process that did not start."""
    from ebrain.models import resolve_model  # noqa: PLC0415

    with step(board, f"model fetch ({config.model})"):
        model_path = await asyncio.to_thread(resolve_model, config.model, config.state_dir / "models")
    skip_ingest = None if config.ingest else "ingest off"
    skip_ingest = skip_ingest or missing_for_ingest()
    if skip_ingest:
        board.note(skip_ingest)
    records_before = dataset_records(config.data_dir)
    log_dir = config.state_dir / "logs" / time.strftime("demo-%Y%m%d-%H%M%S")
    specs = fleet_specs(config, model_path, env, ingest=skip_ingest is None)
    services = [s for s in specs if s.ready_timeout_s is not None]
    devices = [s for s in specs if s.ready_timeout_s is None]
    board.expect(config.devices * config.requests)
    board.note(f"logs in {log_dir}")
    lag: int | None = None

    def on_line(_name: str, obj: dict[str, Any]) -> None:
        if obj.get("event") == "outcome":
            board.emit({"kind": "outcome", **{k: v for k, v in obj.items() if k != "event"}})

    started = time.monotonic()
    async with Fleet(log_dir, on_line=on_line, emit=board.emit) as fleet, \
            Scraper(fleet.metrics_targets, board.emit, board.now, config.scrape_interval_s):
        with step(board, "services start"):
            await fleet.start(services)
            since = await offsets(_kafka(env), _ingest_topics()) if skip_ingest is None else ({}, {})
        with step(board, "requests"):
            await fleet.start(devices)
            scenario = asyncio.create_task(during(fleet)) if during else None
            unfinished = await fleet.wait_finished([d.name for d in devices], config.deadline_s)
            if scenario is not None:
                await scenario
        if unfinished:
            board.note(f"deadline: still running after {config.deadline_s:.0f} s: {', '.join(unfinished)}")
        if skip_ingest is None:
            with step(board, "ingest catching up"):
                lag = await wait_drained(_kafka(env), config.ingest_group, _ingest_topics(), since[0],
                                         config.drain_timeout_s)
        await scrape_once(fleet.metrics_targets(), board.emit, board.now)
        board.emit({"kind": "step", "name": "shutdown", "phase": "start"})
    board.emit({"kind": "step", "name": "shutdown", "phase": "end"})
    outcomes = [e for e in board.events if e["kind"] == "outcome"]
    summary = summarize(config.devices * config.requests, outcomes)
    state = board.state
    summary |= {
        "wall_s": round(time.monotonic() - started, 1), "devices": config.devices, "model": str(model_path),
        "cloud_backend": env.get("EBRAIN_BACKEND", "llama"), "deadletters": int(state.deadletters()),
        "foreign_refused": int(state.total("gateway_foreign")),
        "logs": str(log_dir),
    }
    summary |= _ingest_summary(config, skip_ingest, records_before, lag, state.total("ingest_consumed"))
    return summary


def _ingest_summary(config: DemoConfig, skipped: str | None, before: int, lag: int | None,
                    consumed: float) -> dict[str, Any]:
    if skipped:
        return {"ingest": skipped}
    after = dataset_records(config.data_dir)
    return {"dataset": str(config.data_dir), "dataset_records_written": after - before, "dataset_records": after,
            "ingest_consumed": int(consumed), "ingest_lag": lag}


def _kafka(env: dict[str, str]) -> Any:
    from ebrain.config import KafkaSettings  # noqa: PLC0415

    bootstrap = env.get("EBRAIN_KAFKA_BOOTSTRAP") or env.get("EBRAIN_KAFKA__BOOTSTRAP")
    return KafkaSettings(bootstrap=bootstrap) if bootstrap else KafkaSettings()


def _ingest_topics() -> tuple[str, ...]:
    from cloud.ingest.ingestor import TOPICS  # noqa: PLC0415 - only with the data extra

    return TOPICS
