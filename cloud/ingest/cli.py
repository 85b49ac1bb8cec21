"""`ebrain data ...`: the streaming ingest worker, Ray curation and synthetic data."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from cloud.ingest.settings import IngestSettings

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Training data: PII-filtered ingestion, curation with Ray, synthetic data.")
log = logging.getLogger("cloud.ingest")


@app.callback()
def _group() -> None:
    """Training data: PII-filtered ingestion, curation with Ray, synthetic data."""


def _settings(data_dir: Path | None, bootstrap: str | None = None) -> IngestSettings:
    from cloud.ingest.settings import IngestSettings  # noqa: PLC0415 - keep `ebrain --help` fast
    from ebrain import log as logs  # noqa: PLC0415

    settings = IngestSettings()
    updates: dict[str, object] = {}
    if data_dir:
        updates["data_dir"] = data_dir
    bootstrap = bootstrap or os.environ.get("EBRAIN_KAFKA_BOOTSTRAP")
    if bootstrap:
        updates["kafka"] = settings.kafka.model_copy(update={"bootstrap": bootstrap})
    settings = settings.model_copy(update=updates)
    logs.configure(settings.log_level, component="cloud.ingest")
    return settings


@app.command("ingest")
def ingest(
    data_dir: Annotated[Path | None, typer.Option(help="Dataset root (default: EBRAIN_DATA_DIR).")] = None,
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers, host:port.")] = None,
) -> None:
    """Consume results, escalations and cloud answers; write redacted records until SIGINT or SIGTERM."""
    from ebrain.metrics import serve  # noqa: PLC0415

    settings = _settings(data_dir, bootstrap)
    serve(settings.metrics_port, settings.metrics_addr)
    try:
        asyncio.run(_run(settings))
    except Exception:
        log.exception("ingest worker failed")
        raise typer.Exit(1) from None


async def _run(settings: IngestSettings) -> None:
    from cloud.ingest.app import IngestWorker  # noqa: PLC0415

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with IngestWorker(settings) as worker:
            ready = asyncio.create_task(worker.ready.wait())
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({ready, stopping}, return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            if worker.ready.is_set():
                print(json.dumps({"event": "ready", "component": "ingest", "data_dir": str(settings.data_dir)}),
                      flush=True)
            await stopping
            log.info("signal received, stopping")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


@app.command("curate")
def curate(
    input_path: Annotated[Path, typer.Option("--input", exists=True, help="Dataset dir, Parquet or JSONL.")],
    output: Annotated[Path, typer.Option(help="Dataset root to write (a manifest per run).")],
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster address (default: local Ray).")] = None,
    num_cpus: Annotated[int, typer.Option(min=1, help="CPUs of the local Ray.")] = 2,
    actors: Annotated[int, typer.Option(min=1, help="Parallel pipeline copies (one spaCy model each).")] = 2,
) -> None:
    """Reprocess a dataset with the same PII, quality and dedup rules on Ray; print a JSON summary."""
    from cloud.ingest.batch import curate as run_curate  # noqa: PLC0415

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local Ray without token auth (ENVIRONMENT.md)
    settings = _settings(output)
    summary = run_curate(settings, input_path, ray_address=ray_address, num_cpus=num_cpus, actors=actors)
    typer.echo(json.dumps(summary))


@app.command("synth")
def synth(
    seeds: Annotated[Path, typer.Option(exists=True, help="A seed document, or a folder of .txt/.md files.")],
    data_dir: Annotated[Path | None, typer.Option(help="Dataset root (default: EBRAIN_DATA_DIR).")] = None,
    pairs: Annotated[int, typer.Option(min=1, max=10, help="Q/A pairs to ask for per seed chunk.")] = 3,
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers, host:port.")] = None,
) -> None:
    """Ask the cloud model (via Kafka, like any request) for Q/A pairs about seed documents; store them."""
    from cloud.ingest.app import build_pipeline  # noqa: PLC0415
    from cloud.ingest.core.synth import chunks  # noqa: PLC0415
    from cloud.ingest.synth import synthesize  # noqa: PLC0415

    settings = _settings(data_dir, bootstrap)
    files = sorted(p for p in seeds.rglob("*") if p.suffix in {".txt", ".md"}) if seeds.is_dir() else [seeds]
    documents = [c for f in files for c in chunks(f.read_text(encoding="utf-8"))]
    summary = asyncio.run(synthesize(settings, build_pipeline(settings), documents, pairs))
    typer.echo(json.dumps(summary))
