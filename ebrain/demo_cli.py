"""`ebrain demo`: bring the stack up, run the fleet, print a line per request and the summary."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import typer


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
) -> None:
    """Run gateway, cloud worker and N simulated devices over real brokers; `lost` must be 0."""
    from ebrain import stack  # noqa: PLC0415
    from ebrain.demo import DemoConfig, run_demo  # noqa: PLC0415

    def echo(line: str) -> None:
        typer.echo(line, err=json_out)

    before = stack.status(state_dir)
    running = stack.up(state_dir)
    echo("stack:\n" + running.human())
    # Stop afterwards only when this run started the managed services (someone else's `stack up` stays up).
    started_here = not any(s.managed and s.running for s in before.services)
    env = {
        "EBRAIN_KAFKA_BOOTSTRAP": running.kafka_bootstrap,
        "EBRAIN_KAFKA__BOOTSTRAP": running.kafka_bootstrap,
        "EBRAIN_MQTT__HOST": running.mqtt_host,
        "EBRAIN_MQTT__PORT": str(running.mqtt_port),
        "EBRAIN_REDIS_URL": running.redis_url,
    }
    config = DemoConfig(devices=devices, requests=requests, model=model, state_dir=state_dir)
    try:
        summary = asyncio.run(run_demo(config, echo, env))
        if flywheel:
            from trainers.flywheel import FlywheelConfig, demo_settings, run_flywheel  # noqa: PLC0415

            summary |= run_flywheel(demo_settings(config.state_dir, config.model), FlywheelConfig(teacher=config.model),
                                    echo=echo)
    finally:
        if started_here and not keep_stack:
            stack.down(state_dir)
    echo("summary:")
    for key, value in summary.items():
        echo(f"  {key:>15}: {value}")
    if json_out:
        print(json.dumps(summary), file=sys.stdout, flush=True)
    if summary["lost"]:
        raise typer.Exit(1)
