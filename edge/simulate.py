"""Fleet simulator: N device agents in one process sharing one loaded model (frugal: one copy of the weights).

Each device has its own MQTT session, spool and OTA manager, and runs its share of the workload in order;
devices run concurrently, so they contend for the one engine as real requests would (its bounded queue
rejects what does not fit, and those rejections are counted like any other outcome). An OTA order to any
simulated device swaps the shared model for all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.settings import EdgeSettings
from schemas import InferenceRequest, new_id


@dataclass(frozen=True, slots=True)
class Task:
    """One workload line: a prompt for device `device` (an index; None = round-robin)."""

    prompt: str
    tags: tuple[str, ...] = ()
    max_tokens: int = 48
    device: int | None = None


def load_workload(path: Path) -> list[Task]:
    """JSON lines {"prompt", "tags"?, "max_tokens"?, "device"?}; blank lines skipped; ValueError when empty."""
    tasks = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            tasks.append(Task(str(obj["prompt"]), tuple(obj.get("tags", ())), int(obj.get("max_tokens", 48)),
                              obj.get("device")))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: {exc}") from exc
    if not tasks:
        raise ValueError(f"no tasks in {path}")
    return tasks


def assign(tasks: list[Task], devices: int) -> list[list[Task]]:
    """Each device's tasks, in workload order: explicit `device` indexes (mod N), the rest round-robin."""
    shares: list[list[Task]] = [[] for _ in range(devices)]
    for i, task in enumerate(tasks):
        shares[(task.device if task.device is not None else i) % devices].append(task)
    return shares


def summarize(lines: list[dict[str, Any]], devices: int, wall_s: float) -> dict[str, Any]:
    """The final JSON line: counts per route and status, latency percentiles, throughput."""
    ok = [line for line in lines if line["status"] == "ok"]
    e2e = sorted(float(line["e2e_ms"]) for line in ok)

    def pct(q: float) -> float | None:
        return round(e2e[min(len(e2e) - 1, int(q * len(e2e)))], 1) if e2e else None

    tokens = sum(int(line.get("tokens") or 0) for line in ok if line["route"] == "local")
    return {
        "event": "summary", "devices": devices, "sent": len(lines),
        "answered_local": sum(1 for line in ok if line["route"] == "local"),
        "answered_cloud": sum(1 for line in ok if line["route"] == "cloud"),
        "rejected": sum(1 for line in lines if line["status"] == "rejected"),
        "failed": sum(1 for line in lines if line["status"] == "failed"),
        "p50_ms": pct(0.5), "p95_ms": pct(0.95), "wall_s": round(wall_s, 2),
        "local_tokens_per_s": round(tokens / wall_s, 1) if wall_s else 0.0,
    }


async def simulate(settings: EdgeSettings, devices: int, tasks: list[Task], emit: Callable[[dict[str, Any]], None],
                   prefix: str = "sim") -> dict[str, Any]:
    """Run the workload on `devices` agents sharing one engine; `emit` gets each outcome line; returns the summary."""
    from edge.app import device_stack, startup_engine  # noqa: PLC0415 - llama is heavy
    from edge.cli import outcome_line  # noqa: PLC0415
    from edge.engines import SwappableEngine  # noqa: PLC0415

    engine = SwappableEngine(await startup_engine(settings))
    lines: list[dict[str, Any]] = []
    names = [f"{prefix}-{i}" for i in range(devices)]
    try:
        async with contextlib.AsyncExitStack() as stack:
            agents = [await stack.enter_async_context(device_stack(settings, engine, name)) for name in names]
            emit({"event": "ready", "devices": devices, "tenant": settings.tenant, "model": engine.model_id})
            start = time.monotonic()

            async def run(agent: Any, share: list[Task]) -> None:
                for n, task in enumerate(share):
                    request = InferenceRequest(
                        request_id=f"{agent.device}-{n}-{new_id()[-6:]}", prompt=task.prompt,
                        system=settings.system_prompt, tags=task.tags, max_tokens=task.max_tokens,
                    )
                    line = outcome_line(settings.tenant, agent.device, await agent.handle(request))
                    lines.append(line)
                    emit(line)

            async with asyncio.TaskGroup() as group:
                for agent, share in zip(agents, assign(tasks, devices), strict=True):
                    group.create_task(run(agent, share))
            wall_s = time.monotonic() - start
            for agent in agents:
                await agent.publish_telemetry()
    finally:
        await engine.aclose()
    return summarize(lines, devices, wall_s)
