"""`ebrain bench NAME`: run a benchmark from bench/ and print its result as JSON (last line)."""

from __future__ import annotations

import json

import typer

app = typer.Typer(no_args_is_help=True)


@app.command("codec")
def codec(
    n: int = typer.Option(20_000, min=100, help="Messages per measurement."),
    json_out: bool = typer.Option(True, "--json/--no-json", help="Print one JSON object (the default)."),
) -> None:
    """Schema encode/decode rate against raw json on the same ~1 KB message, with the ratio."""
    from bench.codec import run  # noqa: PLC0415

    result = run(n)
    typer.echo(json.dumps(result) if json_out else "\n".join(f"{k}: {v}" for k, v in result.items()))
