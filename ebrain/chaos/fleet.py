"""The chaos workload: N real edge agents (edge.app.device_stack, one shared engine) sending paced requests.

Unlike `ebrain edge simulate`, requests go out on a clock (one every `interval_s` per device) without waiting
for the previous answer, so traffic keeps flowing into a fault instead of stalling behind the first blocked
escalation, and each request is announced (`{"event": "sent"}`) before the agent takes it, so the ledger
knows every id even if its outcome never comes. Odd-numbered requests carry the `cloud` tag (escalated);
even ones are answered locally. Prompts are unique per run, so the cloud's cache cannot hide a backend fault.

Lines on stdout: ready (with this process's pid, for disk-limit faults), sent, outcome (edge.cli's fields,
or status `error` with the exception when the agent raised), done.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable
from typing import Any

from edge.settings import EdgeSettings
from schemas import InferenceRequest

Emit = Callable[[dict[str, Any]], None]


def request_for(run: str, device: str, n: int, max_tokens: int = 8) -> InferenceRequest:
    """The n-th request of `device` (its name starts with the run id) in run `run`: odd ones escalate (tag `cloud`),
    even ones stay local."""
    return InferenceRequest(
        request_id=f"{device}-{n}", prompt=f"[{run} {device} #{n}] What is {n} plus {n}?",
        tags=("cloud",) if n % 2 else (), max_tokens=max_tokens,
    )


async def _one(agent: Any, request: InferenceRequest, tenant: str, emit: Emit) -> None:
    from edge.cli import outcome_line  # noqa: PLC0415

    try:
        outcome = await agent.handle(request)
    except Exception as exc:  # the agent should not raise; if it does, the ledger must see why
        emit({"event": "outcome", "tenant": tenant, "device": agent.device, "request_id": request.request_id,
              "route": "local", "status": "error", "reason": f"{type(exc).__name__}: {exc}"[:200]})
        return
    emit(outcome_line(tenant, agent.device, outcome))


async def _device(agent: Any, *, run: str, messages: int, interval_s: float, tenant: str, emit: Emit) -> None:
    async with asyncio.TaskGroup() as group:
        for n in range(messages):
            request = request_for(run, agent.device, n)
            emit({"event": "sent", "device": agent.device, "request_id": request.request_id})
            group.create_task(_one(agent, request, tenant, emit))
            await asyncio.sleep(interval_s)


async def run_fleet(settings: EdgeSettings, *, run: str, devices: int, messages: int, interval_s: float,
                    emit: Emit, stop: asyncio.Event) -> None:
    """Run the workload; after `done`, keep the agents (their spools draining, downlinks open) until `stop`."""
    from edge.app import device_stack, startup_engine  # noqa: PLC0415 - llama is heavy
    from edge.engines import SwappableEngine  # noqa: PLC0415

    engine = SwappableEngine(await startup_engine(settings))
    try:
        async with contextlib.AsyncExitStack() as stack:
            agents = [await stack.enter_async_context(device_stack(settings, engine, f"{run}-d{i}"))
                      for i in range(devices)]
            emit({"event": "ready", "pid": os.getpid(), "devices": [a.device for a in agents]})
            async with asyncio.TaskGroup() as group:
                for agent in agents:
                    group.create_task(_device(agent, run=run, messages=messages, interval_s=interval_s,
                                              tenant=settings.tenant, emit=emit))
            emit({"event": "done"})
            await stop.wait()
    finally:
        await engine.aclose()


def main(run: str, devices: int, messages: int, interval_s: float) -> None:
    """Process entry: settings from the environment, JSON lines on stdout, stop on SIGTERM/SIGINT."""
    import signal  # noqa: PLC0415

    from ebrain import log  # noqa: PLC0415

    log.configure(os.environ.get("EBRAIN_LOG_LEVEL", "WARNING"), component="chaos-fleet")
    settings = EdgeSettings()

    def emit(line: dict[str, Any]) -> None:
        print(json.dumps(line), flush=True)

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_fleet(settings, run=run, devices=devices, messages=messages, interval_s=interval_s,
                        emit=emit, stop=stop)

    asyncio.run(go())
