"""`ebrain edge run`: one simulated device answering a prompt set, printing one JSON line per outcome."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(no_args_is_help=True)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def outcome_line(tenant: str, device: str, outcome: Any) -> dict[str, Any]:
    """The JSON line printed for one finished request (the demo and tests parse these)."""
    r = outcome.result
    return {
        "event": "outcome", "tenant": tenant, "device": device, "request_id": r.request_id,
        "route": r.route, "status": r.status, "reason": r.reason, "escalation_reason": outcome.escalation_reason,
        "model_id": r.model_id, "latency_ms": round(r.latency_ms, 1), "e2e_ms": round(outcome.e2e_ms, 1),
        "tokens": r.completion_tokens, "text": r.text[:160],
    }


async def _run(settings: Any, prompts: Any, requests: int, offset: int, forever: bool) -> int:
    """Serve until the prompts are done (and, with `forever`, until a signal); SIGTERM/SIGINT stop it at once.

    A signal cancels whatever is awaited (model load, local inference, a wait for the cloud's reply of up to
    reply_timeout_s, the shutdown drain): everything is closed on the way out, and messages still in the spool
    stay there for the next start. A second signal gets the default action (ends the process).
    """
    main = asyncio.current_task()
    assert main is not None
    loop = asyncio.get_running_loop()
    received: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig.name)
        for each in STOP_SIGNALS:
            loop.remove_signal_handler(each)
        main.cancel()

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    progress = {"sent": 0}
    try:
        await _serve(settings, prompts, requests, offset, forever, progress)
    except asyncio.CancelledError:
        if not received:
            raise
        main.uncancel()
        print(json.dumps({"event": "stopped", "signal": received[0], "device": settings.device, **progress}),
              flush=True)
    return 0


async def _serve(settings: Any, prompts: Any, requests: int, offset: int, forever: bool,
                 progress: dict[str, int]) -> None:
    from edge.app import running_agent  # noqa: PLC0415
    from schemas import InferenceRequest, new_id  # noqa: PLC0415

    async with running_agent(settings) as agent:
        print(json.dumps({"event": "ready", "device": settings.device, "tenant": settings.tenant}), flush=True)
        for i in range(requests):
            prompt = prompts[(offset + i) % len(prompts)]
            request = InferenceRequest(
                request_id=f"{settings.device}-{i}-{new_id()[-6:]}", prompt=prompt.text,
                system=settings.system_prompt, tags=prompt.tags, max_tokens=prompt.max_tokens,
            )
            progress["sent"] += 1
            outcome = await agent.handle(request)
            print(json.dumps(outcome_line(settings.tenant, settings.device, outcome)), flush=True)
        await agent.publish_telemetry()
        print(json.dumps({"event": "done", "device": settings.device, "sent": progress["sent"]}), flush=True)
        if forever:
            await asyncio.Event().wait()  # until a signal cancels us


@app.command("run")
def run(
    tenant: str = typer.Option(None, help="Tenant id (env EBRAIN_TENANT)."),
    device: str = typer.Option(None, help="Device id (env EBRAIN_DEVICE)."),
    model: str = typer.Option(None, help="Model: a GGUF path, smollm2, gemma3-270m, tiny or hf:repo/file."),
    prompts: str = typer.Option("builtin", help="'builtin' or a file of JSON lines / text lines."),
    requests: int = typer.Option(4, min=0, help="How many requests to send (cycling through the prompts)."),
    offset: int = typer.Option(0, min=0, help="Start at this prompt, so simulated devices differ."),
    forever: bool = typer.Option(False, help="Keep running (serving downlink) after the prompts."),
    log_level: str = typer.Option("WARNING", help="Log level for JSON logs on stderr."),
) -> None:
    """Run one edge device: answer prompts locally, escalate per policy, print one JSON line per outcome."""
    from ebrain import log  # noqa: PLC0415
    from ebrain.metrics import serve  # noqa: PLC0415
    from edge.prompts import load  # noqa: PLC0415
    from edge.settings import EdgeSettings  # noqa: PLC0415

    log.configure(log_level, component="edge")
    overrides: dict[str, Any] = {k: v for k, v in {"tenant": tenant, "device": device, "model": model}.items() if v}
    settings = EdgeSettings(**overrides)
    serve(settings.metrics_port, settings.metrics_addr)
    raise typer.Exit(asyncio.run(_run(settings, load(prompts), requests, offset, forever)))


@app.command("simulate")
def simulate(
    devices: int = typer.Option(3, min=1, help="How many simulated devices (one process, one shared model)."),
    workload: Path = typer.Option(..., exists=True, dir_okay=False, help="JSON lines: prompt, tags, max_tokens."),
    tenant: str = typer.Option(None, help="Tenant id (env EBRAIN_TENANT)."),
    model: str = typer.Option(None, help="Model: a GGUF path, smollm2, gemma3-270m, tiny or hf:repo/file."),
    prefix: str = typer.Option("sim", help="Device names are PREFIX-0 .. PREFIX-(N-1)."),
    log_level: str = typer.Option("WARNING", help="Log level for JSON logs on stderr."),
) -> None:
    """Run N device agents on a workload file; one JSON line per outcome, then a summary line."""
    from ebrain import log  # noqa: PLC0415
    from ebrain.metrics import serve  # noqa: PLC0415
    from edge.settings import EdgeSettings  # noqa: PLC0415
    from edge.simulate import load_workload  # noqa: PLC0415
    from edge.simulate import simulate as run_fleet  # noqa: PLC0415

    log.configure(log_level, component="edge-sim")
    overrides: dict[str, Any] = {k: v for k, v in {"tenant": tenant, "model": model}.items() if v}
    settings = EdgeSettings(**overrides)
    try:
        tasks = load_workload(workload)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    serve(settings.metrics_port, settings.metrics_addr)

    def emit(line: dict[str, Any]) -> None:
        print(json.dumps(line), flush=True)

    summary = asyncio.run(run_fleet(settings, devices, tasks, emit, prefix))
    emit(summary)
