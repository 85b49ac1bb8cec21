"""`ebrain chaos list | run | table`: faults injected into a private stack, and the loss ledger after each."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.callback()
def _group() -> None:
    """Chaos runs: inject a fault into a private stack mid-workload, then reconcile every message."""


@app.command("list")
def list_scenarios(as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False) -> None:
    """The scenarios, with what each breaks and for how long by default."""
    from ebrain.chaos.scenarios import SCENARIOS  # noqa: PLC0415

    for s in SCENARIOS.values():
        if as_json:
            typer.echo(json.dumps({"scenario": s.name, "duration_s": s.duration_s, "flow": s.flow,
                                   "summary": s.summary}))
        else:
            typer.echo(f"{s.name:<15} {s.duration_s:>5g} s  {s.summary}")


@app.command("run")
def run(
    scenario: Annotated[list[str] | None, typer.Argument(help="Scenario names (see `ebrain chaos list`).")] = None,
    run_all: Annotated[bool, typer.Option("--all", help="Every scenario, one after another, on one stack.")] = False,
    devices: Annotated[int, typer.Option(min=1, help="Simulated devices (one process).")] = 3,
    messages: Annotated[int, typer.Option(min=2, help="Requests per device (odd ones escalate).")] = 20,
    duration: Annotated[float | None, typer.Option(min=0, help="Hold every fault this long (default: each "
                                                                "scenario's own).")] = None,
    settle: Annotated[float, typer.Option(min=1, help="After the workload, wait this long for the ledger.")] = 90.0,
    workdir: Annotated[Path | None, typer.Option(help="Logs and broker data (default: a temporary dir).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Result lines only, one JSON object each.")] = False,
) -> None:
    """Run scenarios; one result line each (scenario, sent, lost, duplicates, dead_lettered, recovery_s, ...).

    Exit status 1 when any run lost a message or never recovered.
    """
    from ebrain import log  # noqa: PLC0415
    from ebrain.chaos.runner import RunConfig  # noqa: PLC0415
    from ebrain.chaos.scenarios import SCENARIOS  # noqa: PLC0415

    names = list(SCENARIOS) if run_all else (scenario or [])
    unknown = [n for n in names if n not in SCENARIOS]
    if not names or unknown:
        typer.echo(f"unknown or no scenario: {unknown or names}; known: {', '.join(SCENARIOS)}", err=True)
        raise typer.Exit(2)
    log.configure("WARNING", component="chaos")
    # The read-back clients see the faults too (Kafka down): that is the point, not news.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    config = RunConfig(devices=devices, messages=messages, duration_s=duration, settle_s=settle)
    results = asyncio.run(_run(names, config, workdir, as_json))
    if any(r["lost"] or r["recovery_s"] is None for r in results):
        raise typer.Exit(1)


async def _run(names: list[str], config: Any, workdir: Path | None, as_json: bool) -> list[dict[str, Any]]:
    from ebrain.chaos.runner import run_scenario  # noqa: PLC0415
    from ebrain.chaos.scenarios import SCENARIOS  # noqa: PLC0415
    from ebrain.chaos.stack import ChaosStack  # noqa: PLC0415

    results = []
    with tempfile.TemporaryDirectory(prefix="ebrain-chaos-") as tmp:
        root = workdir or Path(tmp)
        if not as_json:
            typer.echo(f"starting a private stack in {root}", err=True)
        async with ChaosStack(root) as stack:
            for name in names:
                result = await run_scenario(stack, SCENARIOS[name], config)
                results.append(result)
                typer.echo(json.dumps(result))
    return results


@app.command("table")
def table(
    source: Annotated[Path | None, typer.Argument(help="JSON lines from `ebrain chaos run --json` (default: stdin).",
                                                   exists=True, dir_okay=False)] = None,
) -> None:
    """Render result lines as the README's Reliability table (Markdown)."""
    from ebrain.chaos.table import parse_lines, render  # noqa: PLC0415

    lines = source.read_text().splitlines() if source else sys.stdin.read().splitlines()
    typer.echo(render(parse_lines(lines)))


@app.command("devices", hidden=True)
def devices_cmd(
    run: Annotated[str, typer.Option(help="Run id: the tenant, and the prefix of device names and request ids.")],
    devices: Annotated[int, typer.Option(min=1)] = 3,
    messages: Annotated[int, typer.Option(min=1)] = 8,
    interval: Annotated[float, typer.Option(min=0.0)] = 0.2,
) -> None:
    """The chaos workload's devices (started by `ebrain chaos run`); settings from EBRAIN_ variables."""
    from ebrain.chaos.fleet import main  # noqa: PLC0415

    main(run, devices, messages, interval)
