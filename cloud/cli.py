"""`ebrain cloud ...`: run the cloud worker until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from typing import TYPE_CHECKING, Annotated

import typer

from ebrain.models import SPECS_HELP

if TYPE_CHECKING:
    from cloud.app import CloudWorker
    from cloud.settings import CloudSettings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Cloud workers consuming Kafka.")
log = logging.getLogger("cloud")


@app.callback()
def _group() -> None:
    """Cloud workers consuming Kafka."""


@app.command("worker")
def worker(
    model: Annotated[str | None, typer.Option(help=f"Model: {SPECS_HELP} (default: EBRAIN_MODEL).")] = None,
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers, host:port.")] = None,
    backend: Annotated[str | None, typer.Option(
        help="llama (in-process llama.cpp) or router (EBRAIN_BACKENDS servers behind cache, limits and "
             "fallback routing) (default: EBRAIN_BACKEND).")] = None,
) -> None:
    """Answer escalations and requests from Kafka until SIGINT or SIGTERM, then stop cleanly."""
    from pydantic import ValidationError  # noqa: PLC0415

    from cloud.settings import CloudSettings  # noqa: PLC0415 - keep `ebrain --help` fast
    from ebrain import log as logs  # noqa: PLC0415
    from ebrain.metrics import serve  # noqa: PLC0415

    settings = CloudSettings()
    updates: dict[str, object] = {}
    if model:
        updates["model"] = model
    if backend:
        updates["backend"] = backend
    # The short form every ebrain command honours, beside the nested EBRAIN_KAFKA__BOOTSTRAP.
    bootstrap = bootstrap or os.environ.get("EBRAIN_KAFKA_BOOTSTRAP")
    if bootstrap:
        updates["kafka"] = settings.kafka.model_copy(update={"bootstrap": bootstrap})
    try:
        settings = CloudSettings.model_validate({**settings.model_dump(), **updates}) if updates else settings
    except ValidationError as exc:
        raise typer.BadParameter(str(exc).splitlines()[-2].strip() if "\n" in str(exc) else str(exc)) from None
    logs.configure(settings.log_level, component="cloud")
    serve(settings.metrics_port, settings.metrics_addr)
    try:
        asyncio.run(_run(settings))
    except Exception:
        log.exception("cloud worker failed")
        raise typer.Exit(1) from None


async def _run(settings: CloudSettings) -> None:
    from cloud.app import CloudWorker  # noqa: PLC0415

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with CloudWorker(settings) as worker:
            await _announce_ready(worker, stop)
            await stop.wait()
            log.info("signal received, stopping")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _announce_ready(worker: CloudWorker, stop: asyncio.Event) -> None:
    """Print the {"event": "ready"} line on stdout once partitions are assigned (the demo waits on it)."""
    ready = asyncio.create_task(worker.ready.wait())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({ready, stopping}, return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()
    stopping.cancel()
    if worker.ready.is_set():
        print(json.dumps({"event": "ready", "component": "cloud", "group": worker.settings.group_id}), flush=True)
