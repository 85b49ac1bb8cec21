"""`ebrain stack up|down|status`: a table for humans on stdout; `--json` adds one JSON object as last line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ebrain.stack import api
from ebrain.stack.core import StackError
from ebrain.stack.model import StackStatus
from ebrain.stack.settings import StackSettings

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Local infrastructure: MQTT (Mosquitto), Kafka protocol (Tansu), Redis 8 (vector sets).",
)

StateDir = Annotated[
    Path | None,
    typer.Option("--state-dir", help="Pid files, logs and data. Default .ebrain/ (env EBRAIN_STATE_DIR)."),
]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object on the last line.")]


def _settings(state_dir: Path | None, mqtt_auth: Path | None = None) -> StackSettings:
    cfg = StackSettings()
    if state_dir is not None:
        cfg = cfg.model_copy(update={"state_dir": state_dir})
    if mqtt_auth is not None:
        cfg = cfg.model_copy(update={"mqtt_auth_dir": mqtt_auth})
    return cfg


def _print(st: StackStatus, as_json: bool) -> None:
    typer.echo(st.human())
    if as_json:
        typer.echo(json.dumps(st.to_json(), sort_keys=True))


@app.command()
def up(
    state_dir: StateDir = None,
    as_json: Json = False,
    mqtt_auth: Annotated[
        Path | None,
        typer.Option("--mqtt-auth", help="Start Mosquitto with the password/ACL files of `ebrain gateway provision` "
                     "in this folder (env EBRAIN_STACK_MQTT_AUTH_DIR)."),
    ] = None,
) -> None:
    """Start MQTT, Kafka and Redis where nothing serves them yet; reuse what already runs. Idempotent."""
    cfg = _settings(state_dir, mqtt_auth)
    try:
        st = api.up(settings=cfg)
    except StackError as exc:
        typer.echo(f"ebrain stack up failed:\n{exc}", err=True)
        raise typer.Exit(1) from exc
    _print(st, as_json)
    typer.echo(f"state: {cfg.state_dir}", err=True)


@app.command()
def down(state_dir: StateDir = None) -> None:
    """Stop only the servers `up` started (external ones are left alone)."""
    stopped = api.down(settings=_settings(state_dir))
    typer.echo("stopped: " + (", ".join(stopped) if stopped else "nothing (no server started by ebrain)"))


@app.command()
def status(state_dir: StateDir = None, as_json: Json = False) -> None:
    """Per service: endpoint, running/stopped, owner (ebrain or external), pid."""
    _print(api.status(settings=_settings(state_dir)), as_json)
