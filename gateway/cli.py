"""`ebrain gateway run`: the MQTT <-> Kafka bridge as a process that stops cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import Mapping
from pathlib import Path

import typer

from gateway.settings import GatewaySettings

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.callback()
def _group() -> None:
    """MQTT <-> Kafka gateway."""


def load_settings(env: Mapping[str, str] | None = None) -> GatewaySettings:
    """Settings from EBRAIN_* variables; EBRAIN_KAFKA_BOOTSTRAP, when set, is the Kafka bootstrap."""
    env = os.environ if env is None else env
    settings = GatewaySettings()
    bootstrap = env.get("EBRAIN_KAFKA_BOOTSTRAP")
    if bootstrap:
        kafka = settings.kafka.model_copy(update={"bootstrap": bootstrap})
        settings = settings.model_copy(update={"kafka": kafka})
    return settings


@app.command()
def run(
    log_level: str = typer.Option("INFO", help="Log level (logs are JSON lines on stderr)."),
) -> None:
    """Bridge device MQTT topics and Kafka until SIGINT or SIGTERM."""
    from ebrain.log import configure  # noqa: PLC0415 - keep `--help` fast

    configure(log_level, component="gateway")
    failed = asyncio.run(_serve(load_settings()))
    raise typer.Exit(code=1 if failed else 0)


@app.command()
def provision(
    inventory: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV of `tenant,device` lines."),
    out: Path = typer.Option(Path(".ebrain/mqtt-auth"), "--out", help="Where to write the files."),
    gateway_user: str = typer.Option("ebrain-gateway", help="MQTT username of the gateway replicas."),
) -> None:
    """Write Mosquitto password + ACL files and credentials.json (0600) for every device in INVENTORY.

    Existing passwords are kept; nothing secret is printed. Start Mosquitto with them:
    `ebrain stack up --mqtt-auth OUT` (or password_file/acl_file in your own mosquitto.conf).
    """
    from gateway.core.provision import InventoryError  # noqa: PLC0415
    from gateway.provision import provision as run_provision  # noqa: PLC0415

    try:
        result = run_provision(inventory, out, gateway_user=gateway_user)
    except InventoryError as exc:
        typer.echo(f"{inventory}: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(
        f"{result.devices} devices ({result.new_users} new users); passwords in {result.credentials} (mode 0600)"
    )
    typer.echo(json.dumps(result.to_json(), sort_keys=True))


async def _serve(settings: GatewaySettings) -> bool:
    """Run until a signal (returns False) or until the gateway fails (returns True)."""
    from ebrain.metrics import serve  # noqa: PLC0415
    from gateway.app import Gateway  # noqa: PLC0415 - aiokafka/paho only when running

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    serve(settings.metrics_port, settings.metrics_addr)
    async with Gateway(settings) as gateway:
        stopped = asyncio.create_task(stop.wait())
        finished = asyncio.create_task(gateway.wait())
        ready = asyncio.create_task(gateway.ready.wait())
        done, _ = await asyncio.wait({stopped, finished, ready}, return_when=asyncio.FIRST_COMPLETED)
        if ready in done:
            # The demo and tests wait on this line before starting devices.
            print(json.dumps({"event": "ready", "component": "gateway", "client_id": settings.client_id}), flush=True)
            done, pending = await asyncio.wait({stopped, finished}, return_when=asyncio.FIRST_COMPLETED)
        else:
            ready.cancel()
            pending = {stopped, finished} - done
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if finished in done and (error := finished.exception()) is not None:
            logging.getLogger(__name__).error("gateway failed", exc_info=error)
        return finished in done
