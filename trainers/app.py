"""Composition root of the trainer: settings in, one round / periodic rounds / a rollout out."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trainers.adapters import data
from trainers.adapters.registry import Registry
from trainers.core.schedule import due
from trainers.rollout import RolloutResult, canary_rollout
from trainers.round import RoundResult, run_round
from trainers.settings import TrainerSettings

log = logging.getLogger(__name__)


def train_once(settings: TrainerSettings, manifest_id: str | None = None) -> RoundResult:
    """One round on the dataset manifest (the latest when None)."""
    from trainers.adapters.evaluate import default_similarity  # noqa: PLC0415

    rows, ident = data.load(settings.data_dir, manifest_id)
    log.info("round starting", extra={"manifest_id": ident, "records": len(rows)})
    return run_round(settings, rows, data_manifest_id=ident, similarity=default_similarity())


def periodic(settings: TrainerSettings, *, stop: Callable[[], bool], wait: Callable[[float], bool],
             check_every_s: float = 30.0) -> list[RoundResult]:
    """Rounds whenever `trainers.core.schedule.due` says so, until `stop()`; `wait(s)` sleeps or returns True
    early when asked to stop. A failed round is logged and retried at the next due time."""
    results: list[RoundResult] = []
    last_run: float | None = None
    records_at_last = 0
    while not stop():
        try:
            records = int(data.manifest(settings.data_dir)["records"])
        except FileNotFoundError:
            records = 0
        verdict = due(now=time.monotonic(), last_run=last_run, interval_s=settings.interval_s, records=records,
                      records_at_last=records_at_last, every_records=settings.every_records)
        log.info("periodic check", extra={"due": verdict.run, "reason": verdict.reason})
        if verdict.run:
            last_run, records_at_last = time.monotonic(), records
            try:
                results.append(train_once(settings))
            except Exception:
                log.exception("training round failed")
        if wait(check_every_s):
            break
    return results


async def rollout(settings: TrainerSettings, version: str, fleet: Sequence[tuple[str, str]], *,
                  deadline_s: float | None = None, base_url: str | None = None) -> RolloutResult:
    """Canary rollout of a registered version over Kafka."""
    from trainers.adapters.kafka import TelemetryWindow, UpdatePublisher  # noqa: PLC0415

    registry = Registry(settings.registry_dir, settings.model_id)
    since = datetime.now(UTC)
    async with UpdatePublisher(settings.kafka) as pub, TelemetryWindow(settings.kafka, since=since) as window:
        return await canary_rollout(registry, version, fleet, publisher=pub, window=window,
                                    config=settings.rollout.config(),
                                    deadline_s=deadline_s or settings.rollout.window_s, base_url=base_url)


def registry_listing(settings: TrainerSettings) -> dict[str, Any]:
    """The registry manifest as stored."""
    return Registry(settings.registry_dir, settings.model_id).load()


def parse_fleet(spec: str) -> list[tuple[str, str]]:
    """'t1/d1,t1/d2' -> [('t1', 'd1'), ('t1', 'd2')]. Raises ValueError on a malformed entry."""
    fleet = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        tenant, sep, device = item.partition("/")
        if not sep or not tenant or not device:
            raise ValueError(f"bad device {item!r}: expected TENANT/DEVICE")
        fleet.append((tenant, device))
    return fleet


def run_rollout(settings: TrainerSettings, version: str, fleet_spec: str, deadline_s: float | None,
                base_url: str | None) -> RolloutResult:
    """Blocking wrapper for the CLI."""
    return asyncio.run(rollout(settings, version, parse_fleet(fleet_spec), deadline_s=deadline_s, base_url=base_url))


def default_paths(settings: TrainerSettings, data_dir: Path | None, registry_dir: Path | None,
                  model: str | None) -> TrainerSettings:
    """Settings with the CLI's overrides applied."""
    updates: dict[str, object] = {}
    if data_dir:
        updates["data_dir"] = data_dir
    if registry_dir:
        updates["registry_dir"] = registry_dir
    if model:
        updates["model"] = model
    return settings.model_copy(update=updates)
