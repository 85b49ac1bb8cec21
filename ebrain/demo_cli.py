"""`ebrain demo`: bring the stack up, run the fleet under a live dashboard, write the report, print the summary."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from ebrain.dashboard.view import Board
    from ebrain.demo import DemoConfig


def demo(
    devices: int = typer.Option(3, min=1, max=32, help="Simulated edge devices (separate processes)."),
    requests: int = typer.Option(4, min=1, help="Requests per device, cycling the built-in prompt set."),
    model: str = typer.Option("smollm2", help="Model for devices and the cloud worker: smollm2, tiny, a path..."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as one JSON object on the last line."),
    state_dir: Path = typer.Option(
        Path(os.environ.get("EBRAIN_STATE_DIR", ".ebrain")), help="State directory (env EBRAIN_STATE_DIR)."
    ),
    keep_stack: bool = typer.Option(False, help="Leave the services that the demo started running."),
    flywheel: bool = typer.Option(
        False, "--flywheel",
        help="Then one training round on the escalations, the gate, promotion, and the held-out workload again.",
    ),
    ingest: bool = typer.Option(True, help="Run the ingest worker (PII-filtered records into the dataset)."),
    dashboard: bool = typer.Option(
        True, help="A live dashboard when stdout is a terminal (never with --json); plain lines otherwise."),
    scenario: str | None = typer.Option(
        None, help="Inject a chaos scenario into the running fleet (gateway-kill, worker-kill); `lost` stays 0."),
) -> None:
    """Run gateway, cloud worker, ingest and N simulated devices over real brokers; `lost` must be 0.

    Ends with the summary and a single-file HTML report under STATE_DIR/reports (its path is `report`)."""
    from ebrain.dashboard.view import Board  # noqa: PLC0415
    from ebrain.demo import DemoConfig, missing_for_fleet, missing_for_flywheel  # noqa: PLC0415

    def echo(line: str) -> None:
        typer.echo(line, err=json_out)

    if problem := missing_for_fleet() or (missing_for_flywheel() if flywheel else None):
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2)
    if scenario is not None:
        from ebrain.demo_chaos import check  # noqa: PLC0415

        if problem := check(scenario):
            typer.echo(f"error: {problem}", err=True)
            raise typer.Exit(2)

    config = DemoConfig(devices=devices, requests=requests, model=model, state_dir=state_dir, ingest=ingest,
                        tenant=os.environ.get("EBRAIN_TENANT", "demo"))
    try:
        with Board(live=dashboard and not json_out and sys.stdout.isatty(), echo=echo) as board:
            summary = _run(config, board, keep_stack=keep_stack, flywheel=flywheel, scenario=scenario)
            summary["report"] = str(_report(config, board, summary))
    except RuntimeError as exc:  # a process that did not start names its log; the fleet and stack are down again
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    echo("summary:")
    width = max(map(len, summary))
    for key, value in summary.items():
        echo(f"  {key:>{width}}: {value}")
    if json_out:
        print(json.dumps(summary), file=sys.stdout, flush=True)
    if summary["lost"]:
        raise typer.Exit(1)


def _run(config: DemoConfig, board: Board, *, keep_stack: bool, flywheel: bool,
         scenario: str | None = None) -> dict[str, Any]:
    from ebrain import stack  # noqa: PLC0415
    from ebrain.demo import run_demo, step  # noqa: PLC0415

    with step(board, "stack up"):
        before = stack.status(config.state_dir)
        running = stack.up(config.state_dir)
    for line in running.human().splitlines():
        board.note(f"stack: {line}")
    # Stop afterwards only when this run started the managed services (someone else's `stack up` stays up).
    started_here = not any(s.managed and s.running for s in before.services)
    env = {
        "EBRAIN_KAFKA_BOOTSTRAP": running.kafka_bootstrap,
        "EBRAIN_KAFKA__BOOTSTRAP": running.kafka_bootstrap,
        "EBRAIN_MQTT__HOST": running.mqtt_host,
        "EBRAIN_MQTT__PORT": str(running.mqtt_port),
        "EBRAIN_REDIS_URL": running.redis_url,
    }
    try:
        hook = None
        if scenario is not None:
            from ebrain.demo_chaos import during  # noqa: PLC0415

            hook = during(scenario, board)
        summary = asyncio.run(run_demo(config, board, env, during=hook))
        if scenario is not None:
            restarts = [e["name"] for e in board.events if e.get("kind") == "proc" and e.get("state") == "restarting"]
            summary |= {"scenario": scenario, "restarted": restarts}
        if flywheel:
            summary |= _flywheel(config, board)
    finally:
        if started_here and not keep_stack:
            with step(board, "stack down"):
                stack.down(config.state_dir)
    return summary


def _flywheel(config: DemoConfig, board: Board) -> dict[str, Any]:
    from ebrain.demo import step  # noqa: PLC0415
    from trainers.flywheel import FlywheelConfig, demo_settings, run_flywheel  # noqa: PLC0415

    with step(board, "flywheel round (training)"):
        result = run_flywheel(demo_settings(config.state_dir, config.model), FlywheelConfig(teacher=config.model),
                              echo=board.note)
    board.emit({"kind": "flywheel", **result})
    # The round's own report (the gate's) keeps its name apart from the demo's HTML report.
    return {("flywheel_report" if key == "report" else key): value for key, value in result.items()}


def _report(config: DemoConfig, board: Board, summary: dict[str, Any]) -> Path:
    from ebrain.report.html import build_report, save_report  # noqa: PLC0415

    html = build_report(board.events, summary)
    return save_report(config.state_dir / "reports", time.strftime("%Y%m%d-%H%M%S"), html, board.events)
