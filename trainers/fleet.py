"""A live fleet for the flywheel's canary rollout, on the running stack (Mosquitto, Kafka).

Gateway, cloud worker (the teacher model) and N edge devices run as `ebrain` processes, like `ebrain demo`. The
devices run the parent model, answer the fleet workload without pause and report telemetry every few seconds
(cumulative counters, `latency_ms_sum` included). The rollout then works as it would on real devices: the candidate
is ordered (`ModelUpdate` on `ebrain.down.model_update`, gateway, MQTT downlink, `edge.ota`) onto a canary
fraction, canary and control are compared from their telemetry on `ebrain.telemetry`, and the candidate is promoted
to the rest or the canary is rolled back to the parent (`trainers.rollout.canary_rollout`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trainers.adapters.registry import Registry
from trainers.core.rollout import Sample
from trainers.rollout import RolloutResult, Window, canary_rollout
from trainers.settings import TrainerSettings

log = logging.getLogger(__name__)

Echo = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """The live fleet: how many devices, their tenant, how often they report, how long a rollout may watch."""

    devices: int = 4
    tenant: str = field(default_factory=lambda: f"flywheel-{uuid.uuid4().hex[:6]}")
    telemetry_interval_s: float = 5.0
    deadline_s: float = 480.0  # no verdict by then rolls back (trainers.rollout)
    ready_timeout_s: float = 240.0
    reply_timeout_s: float = 120.0


def stack_env(state_dir: Path) -> dict[str, str] | None:
    """The environment fleet processes need, from the stack serving `state_dir`; None when MQTT or Kafka is down."""
    from ebrain import stack  # noqa: PLC0415

    running = stack.status(state_dir)
    if not (running.mqtt.running and running.kafka.running):
        return None
    env = {"EBRAIN_KAFKA_BOOTSTRAP": running.kafka_bootstrap, "EBRAIN_KAFKA__BOOTSTRAP": running.kafka_bootstrap,
           "EBRAIN_MQTT__HOST": running.mqtt_host, "EBRAIN_MQTT__PORT": str(running.mqtt_port),
           "EBRAIN_STATE_DIR": str(state_dir)}
    if running.redis.running:
        env["EBRAIN_REDIS_URL"] = running.redis_url
    return env


class FleetWindow:
    """A telemetry window restricted to the fleet's devices (the topic also carries other tenants' devices)."""

    def __init__(self, window: Window, devices: Sequence[str]) -> None:
        self._window, self._devices = window, frozenset(devices)

    def samples(self) -> list[Sample]:
        return [s for s in self._window.samples() if s.device in self._devices]

    async def wait_new(self, timeout_s: float) -> bool:
        return await self._window.wait_new(timeout_s)


def write_workload(prompts: Sequence[str], path: Path, max_tokens: int) -> Path:
    """The devices' prompt file (JSON lines, what `ebrain edge run --prompts` reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"prompt": p, "max_tokens": max_tokens}) + "\n" for p in prompts))
    return path


async def live_rollout(settings: TrainerSettings, registry: Registry, version: str, *, teacher: Path,
                       prompts: Sequence[str], env: dict[str, str], state_dir: Path, config: FleetConfig,
                       echo: Echo) -> RolloutResult:
    """Start the fleet on the parent of `version`, run the canary rollout of `version` on it, stop the fleet."""
    from ebrain.procs import ChildProcess  # noqa: PLC0415
    from trainers.adapters.kafka import TelemetryWindow, UpdatePublisher  # noqa: PLC0415

    parent = str(registry.entry(version)["parent"])
    log_dir = state_dir / "logs" / time.strftime("flywheel-%Y%m%d-%H%M%S")
    workload = write_workload(prompts, log_dir / "fleet-prompts.jsonl", settings.eval_max_tokens)
    names = [f"fw-{i}" for i in range(config.devices)]
    uid = uuid.uuid4().hex[:8]
    # The MQTT broker may be shared (other gateways, other fleets): an own shared-subscription group and client
    # id, no sessions left behind. Short Kafka sessions: a worker that just left the group must not stall the join.
    env = {**env, "EBRAIN_SHARE_GROUP": f"flywheel-{uid}", "EBRAIN_CLIENT_ID": f"flywheel-gw-{uid}",
           "EBRAIN_MQTT__SESSION_EXPIRY_S": "0", "EBRAIN_SESSION_TIMEOUT_MS": "6000",
           "EBRAIN_HEARTBEAT_INTERVAL_MS": "1000"}
    device_env = {**env, "EBRAIN_TENANT": config.tenant, "EBRAIN_MODEL_ID": registry.model_id,
                  "EBRAIN_MODEL_VERSION": parent, "EBRAIN_N_THREADS": "1",
                  "EBRAIN_TELEMETRY_INTERVAL_S": str(config.telemetry_interval_s),
                  "EBRAIN_REPLY_TIMEOUT_S": str(config.reply_timeout_s),
                  # Requests shaped like the flywheel's training and measurement ones: no system prompt.
                  "EBRAIN_SYSTEM_PROMPT": ""}
    kafka = settings.kafka.model_copy(update={"bootstrap": env["EBRAIN_KAFKA__BOOTSTRAP"]})
    async with contextlib.AsyncExitStack() as stack:
        gateway = await stack.enter_async_context(ChildProcess("gateway", ["gateway", "run"], log_dir=log_dir,
                                                               env=env))
        cloud = await stack.enter_async_context(ChildProcess("cloud", ["cloud", "worker", "--model", str(teacher)],
                                                             log_dir=log_dir, env=env))
        await asyncio.gather(gateway.wait_ready(config.ready_timeout_s), cloud.wait_ready(config.ready_timeout_s))
        devices = [await stack.enter_async_context(ChildProcess(
            f"edge-{name}", ["edge", "run", "--device", name, "--model", str(registry.model_path(parent)),
                             "--prompts", str(workload), "--requests", "1000000", "--offset", str(3 * i)],
            log_dir=log_dir, env=device_env)) for i, name in enumerate(names)]
        await asyncio.gather(*(d.wait_ready(config.ready_timeout_s) for d in devices))
        echo(f"flywheel: live fleet of {len(names)} devices on {parent} (tenant {config.tenant}); logs in {log_dir}")
        since = datetime.now(UTC)
        async with UpdatePublisher(kafka) as publisher, TelemetryWindow(kafka, since=since) as window:
            fleet_window = FleetWindow(window, [f"{config.tenant}/{n}" for n in names])
            result = await canary_rollout(registry, version, [(config.tenant, n) for n in names],
                                          publisher=publisher, window=fleet_window,
                                          config=settings.rollout.config(), deadline_s=config.deadline_s)
    return result


def rollout_summary(result: RolloutResult) -> dict[str, Any]:
    """The `rollout` object of the flywheel summary: the verdict, why, the canary devices and both cohorts' numbers
    (devices, requests, escalation rate, error rate, mean latency per request)."""
    return {"mode": "canary", **result.summary()}
