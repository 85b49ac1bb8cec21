"""`ebrain bench NAME`: run a benchmark from bench/ and print its result as one JSON object (the last line).

Each bench module `bench/<name>.py` exposes `register(app: typer.Typer) -> None`, adding its command with
light imports at module level (the heavy ones go inside the command).
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(no_args_is_help=True)
BENCHES = ("codec", "edge", "gateway", "cloud", "pii", "load")

for _name in BENCHES:
    try:
        _module = importlib.import_module(f"bench.{_name}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"bench.{_name}":
            raise
        continue
    _module.register(app)
