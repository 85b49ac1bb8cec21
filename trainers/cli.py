"""`ebrain train ...`: a training round, periodic rounds, a canary rollout, the registry, the flywheel."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from trainers.settings import TrainerSettings

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Fine-tuning flywheel: LoRA SFT/DPO rounds, evaluation gate, registry, canary rollout.")

DataDir = Annotated[Path | None, typer.Option(help="Dataset root (default: EBRAIN_DATA_DIR).")]
RegistryDir = Annotated[Path | None, typer.Option(help="Model registry (default: EBRAIN_REGISTRY_DIR).")]
Model = Annotated[str | None, typer.Option(help="Base model when the registry is empty (default: EBRAIN_MODEL).")]


@app.callback()
def _group() -> None:
    """Fine-tuning flywheel: LoRA SFT/DPO rounds, evaluation gate, registry, canary rollout."""


def _settings(data_dir: Path | None = None, registry_dir: Path | None = None, model: str | None = None,
              bootstrap: str | None = None) -> TrainerSettings:
    from ebrain import log as logs  # noqa: PLC0415 - keep `ebrain --help` fast
    from trainers.app import default_paths  # noqa: PLC0415
    from trainers.settings import TrainerSettings  # noqa: PLC0415

    settings = default_paths(TrainerSettings(), data_dir, registry_dir, model)
    bootstrap = bootstrap or os.environ.get("EBRAIN_KAFKA_BOOTSTRAP")
    if bootstrap:
        settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"bootstrap": bootstrap})})
    logs.configure(settings.log_level, component="trainers")
    return settings


@app.command("run")
def run(data_dir: DataDir = None, registry_dir: RegistryDir = None, model: Model = None,
        manifest: Annotated[str | None, typer.Option(help="Dataset manifest id (default: the latest).")] = None,
        ) -> None:
    """One round on a dataset manifest: train, export, gate, register. Prints a JSON summary."""
    from trainers.app import train_once  # noqa: PLC0415
    from trainers.round import NotEnoughDataError  # noqa: PLC0415

    settings = _settings(data_dir, registry_dir, model)
    try:
        result = train_once(settings, manifest)
    except (NotEnoughDataError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(result.summary()))


@app.command("periodic")
def periodic(data_dir: DataDir = None, registry_dir: RegistryDir = None, model: Model = None,
             interval_s: Annotated[float | None, typer.Option(help="Seconds between rounds.")] = None,
             every_records: Annotated[int | None, typer.Option(help="A round per N new records (0: off).")] = None,
             ) -> None:
    """Rounds every interval or every N new records, until SIGINT or SIGTERM."""
    from ebrain.metrics import serve  # noqa: PLC0415
    from trainers.app import periodic as loop  # noqa: PLC0415

    settings = _settings(data_dir, registry_dir, model)
    serve(settings.metrics_port, settings.metrics_addr)
    updates = {k: v for k, v in {"interval_s": interval_s, "every_records": every_records}.items() if v is not None}
    settings = settings.model_copy(update=updates)
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    results = loop(settings, stop=stopping.is_set, wait=stopping.wait)
    typer.echo(json.dumps({"rounds": [r.summary() for r in results]}))


@app.command("rollout")
def rollout(version: Annotated[str, typer.Argument(help="Registered version, e.g. v3.")],
            devices: Annotated[str, typer.Option(help="The fleet: TENANT/DEVICE,TENANT/DEVICE,...")],
            registry_dir: RegistryDir = None,
            deadline_s: Annotated[float | None, typer.Option(help="Observation window (default 300 s).")] = None,
            base_url: Annotated[str | None, typer.Option(help="Devices download BASE_URL/VERSION/model.gguf; "
                                                              "default: the registry path.")] = None,
            bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers, host:port.")] = None,
            ) -> None:
    """Canary rollout: a fraction of devices first, compared on telemetry, then promote or roll back."""
    from ebrain.metrics import serve  # noqa: PLC0415
    from trainers.app import run_rollout  # noqa: PLC0415

    settings = _settings(registry_dir=registry_dir, bootstrap=bootstrap)
    serve(settings.metrics_port, settings.metrics_addr)
    result = run_rollout(settings, version, devices, deadline_s, base_url)
    typer.echo(json.dumps(result.summary()))
    if result.verdict != "promote":
        raise typer.Exit(1)


@app.command("registry")
def registry(registry_dir: RegistryDir = None) -> None:
    """Print the registry manifest (versions, parents, metrics, statuses) as JSON."""
    from trainers.app import registry_listing  # noqa: PLC0415

    typer.echo(json.dumps(registry_listing(_settings(registry_dir=registry_dir)), indent=1))


@app.command("flywheel")
def flywheel(registry_dir: RegistryDir = None, model: Model = None,
             teacher: Annotated[str, typer.Option(help="The cloud (teacher) model spec or path.")] = "smollm2",
             ) -> None:
    """One turn of the flywheel on the built-in workload; prints escalation_rate_before/after, promoted."""
    from trainers.flywheel import FlywheelConfig, demo_settings, run_flywheel  # noqa: PLC0415

    base = _settings(registry_dir=registry_dir, model=model)
    settings = demo_settings(Path(".ebrain"), base.model, registry_dir=base.registry_dir, kafka=base.kafka)
    summary = run_flywheel(settings, FlywheelConfig(teacher=teacher), echo=lambda s: typer.echo(s, err=True))
    typer.echo(json.dumps(summary))
