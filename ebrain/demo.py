"""The main job: the whole system on the embedded default, as separate processes, with a ledger at the end."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ebrain.procs import ChildProcess
from ebrain.summary import summarize


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


Echo = Callable[[str], None]


def _line(obj: dict[str, Any]) -> str:
    text = obj["text"].replace("\n", " ")[:70]
    why = obj.get("escalation_reason") or obj["reason"]
    return (f"{obj['device']:>8} {obj['route']:>5} {obj['status']:>8} {obj['e2e_ms']:>8.0f} ms"
            f"  [{why}]  {text}")


async def run_demo(config: DemoConfig, echo: Echo, env: dict[str, str]) -> dict[str, Any]:
    """Start gateway, cloud worker and N devices; return the summary once every device is done."""
    from ebrain.models import resolve_model  # noqa: PLC0415

    echo(f"model: resolving {config.model!r} (cached under {config.state_dir / 'models'})")
    model_path = await asyncio.to_thread(resolve_model, config.model, config.state_dir / "models")
    echo(f"model: {model_path}")
    log_dir = config.state_dir / "logs" / time.strftime("demo-%Y%m%d-%H%M%S")
    outcomes: list[dict[str, Any]] = []

    def on_line(_name: str, obj: dict[str, Any]) -> None:
        if obj.get("event") == "outcome":
            outcomes.append(obj)
            echo(_line(obj))

    base_env = {**env, "EBRAIN_STATE_DIR": str(config.state_dir)}
    started = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        gateway = await stack.enter_async_context(
            ChildProcess("gateway", ["gateway", "run"], log_dir=log_dir, env=base_env))
        cloud = await stack.enter_async_context(
            ChildProcess("cloud", ["cloud", "worker", "--model", str(model_path)], log_dir=log_dir, env=base_env))
        await asyncio.gather(gateway.wait_ready(60), cloud.wait_ready(180))
        echo(f"gateway and cloud worker ready; logs in {log_dir}")
        device_env = {**base_env, "EBRAIN_N_THREADS": str(config.device_threads),
                      "EBRAIN_REPLY_TIMEOUT_S": str(config.reply_timeout_s), "EBRAIN_TENANT": config.tenant}
        devices = [
            await stack.enter_async_context(ChildProcess(
                f"edge-{i}",
                ["edge", "run", "--device", f"edge-{i}", "--model", str(model_path),
                 "--requests", str(config.requests), "--offset", str(i)],
                log_dir=log_dir, env=device_env, on_line=on_line,
            ))
            for i in range(config.devices)
        ]
        waits = [asyncio.create_task(d.finished.wait()) for d in devices]
        _done, pending = await asyncio.wait(waits, timeout=config.deadline_s)
        for task in pending:
            task.cancel()
    summary = summarize(config.devices * config.requests, outcomes)
    summary["wall_s"] = round(time.monotonic() - started, 1)
    summary["devices"] = config.devices
    summary["model"] = str(model_path)
    summary["logs"] = str(log_dir)
    return summary
