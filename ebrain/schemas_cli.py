"""`ebrain schemas ...`: the only place schemas/ touches the file system."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True)


@app.command("export")
def export(directory: Path = typer.Argument(..., help="Where to write one JSON Schema file per message type.")) -> None:
    """Write `<type>.v<version>.schema.json` for every message type into DIRECTORY."""
    from schemas.export import json_schemas  # noqa: PLC0415

    directory.mkdir(parents=True, exist_ok=True)
    for name, schema in json_schemas().items():
        (directory / name).write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        typer.echo(str(directory / name))
