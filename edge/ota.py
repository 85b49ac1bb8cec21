"""Over-the-air model updates: fetch, verify, trial-load, smoke-test, swap, remember; or refuse and say why.

An order (`ModelUpdate` on `ebrain/{t}/{d}/down/model_update`) runs through these steps, one order at a time:

1. fetch `path` (copied) or `url` (HTTP, resumed with Range after an interruption) into
   `<models_dir>/<model_id>-<version>.gguf`, checking `size_bytes` and `sha256` (the order's, not the server's);
2. load it in a trial engine next to the serving one (mmap keeps the extra memory to the new weights);
3. smoke test: one short generation must produce tokens within `smoke_max_latency_ms`;
4. swap: new requests go to the new engine at once, requests already running finish on the old one;
5. remember: `current.json` names the running model and the previous one, whose file stays on disk.

On any failure the serving engine is untouched (the trial is closed) and the failure is reported. Reports
(the chosen channel): a telemetry message published at once with `model_update` = `ok:<version>` or
`failed:<version>:<reason>` and the counters `ota_ok` / `ota_failed`, a structured log line, and the metric
`ebrain_edge_model_updates_total{outcome}`. At start-up `startup_model` reads `current.json`; if the updated
model no longer loads, the agent falls back to the previous one, then to the configured model.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from prometheus_client import Counter

from ebrain.inference import Engine
from ebrain.inference.ports import EngineError
from ebrain.lifecycle import Lifecycle
from ebrain.models.store import CHUNK, ModelFetchError, ModelVerifyError, part_path, write_sidecar
from edge.engines import SwappableEngine
from schemas import InferenceRequest, ModelUpdate

log = logging.getLogger(__name__)

UPDATES = Counter("ebrain_edge_model_updates_total", "OTA model update orders by outcome", ["outcome"])
STATE_FILE = "current.json"
QUEUE = 4  # orders waiting behind the running one; more are refused (counted as 'busy')

Loader = Callable[[Path, str, str], Awaitable[Engine]]  # (path, model_id, version) -> loaded engine
Reporter = Callable[[str], Awaitable[None]]


class UpdateRefused(Exception):
    """The order cannot be applied; `reason` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class ModelManager(Lifecycle):
    """Applies model update orders to a SwappableEngine, one at a time, from a bounded queue."""

    def __init__(
        self,
        engine: SwappableEngine,
        *,
        loader: Loader,
        models_dir: Path,
        smoke_max_latency_ms: float = 30_000.0,
        download_timeout_s: float = 60.0,
        report: Reporter | None = None,
        canary: bool = False,
    ) -> None:
        self._engine, self._loader, self._dir = engine, loader, models_dir
        self._smoke_max_latency_ms = smoke_max_latency_ms
        self._download_timeout_s = download_timeout_s
        self._report = report
        self._queue: asyncio.Queue[ModelUpdate] = asyncio.Queue(maxsize=QUEUE)
        self._task: asyncio.Task[None] | None = None
        self.canary = canary
        self.last_report: str | None = None
        self.counters: dict[str, int] = {"ota_ok": 0, "ota_failed": 0, "ota_busy": 0}

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._work(), name="edge-ota")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def submit(self, update: ModelUpdate) -> bool:
        """Queue an order; False (counted, logged) when QUEUE orders already wait."""
        try:
            self._queue.put_nowait(update)
        except asyncio.QueueFull:
            self.counters["ota_busy"] += 1
            UPDATES.labels("busy").inc()
            log.warning("model update refused: busy", extra={"version": update.version})
            return False
        return True

    async def apply(self, update: ModelUpdate) -> str:
        """Run one order to the end and return its report (`ok:...` or `failed:...`); never raises for bad orders."""
        if (update.model_id, update.version) == (self._engine.model_id, self._engine.model_version):
            return await self._finish(update, f"ok:{update.version}", "already_current")
        try:
            path = await asyncio.to_thread(self._fetch, update)
            trial = await self._trial(path, update)
        except UpdateRefused as exc:
            log.warning("model update refused", extra={"version": update.version, "reason": str(exc)[:300]})
            return await self._finish(update, f"failed:{update.version}:{exc.reason}", "failed")
        previous = await self._engine.swap(trial)
        self.canary = update.canary
        await asyncio.to_thread(self._remember, path, update, previous)
        return await self._finish(update, f"ok:{update.version}", "ok")

    async def _work(self) -> None:
        while True:
            update = await self._queue.get()
            try:
                await self.apply(update)
            except Exception:  # a bug must not end OTA for the device's lifetime; log it whole
                log.exception("model update crashed", extra={"version": update.version})

    def _fetch(self, update: ModelUpdate) -> Path:
        dest = self._dir / f"{_safe(update.model_id)}-{_safe(update.version)}.gguf"
        try:
            if update.url:
                from ebrain.models.hub import download_verified  # noqa: PLC0415 - httpx only when needed

                return download_verified(update.url, dest, sha256=update.sha256, size=update.size_bytes,
                                         timeout_s=self._download_timeout_s)
            if update.path:
                return _copy_verified(Path(update.path), dest, sha256=update.sha256, size=update.size_bytes)
        except ModelVerifyError as exc:
            raise UpdateRefused("verify_failed", str(exc)) from exc
        except (ModelFetchError, OSError) as exc:
            raise UpdateRefused("download_failed", str(exc)) from exc
        raise UpdateRefused("no_source", "the order carries neither url nor path")

    async def _trial(self, path: Path, update: ModelUpdate) -> Engine:
        try:
            trial = await self._loader(path, update.model_id, update.version)
        except EngineError as exc:
            raise UpdateRefused("load_failed", str(exc)) from exc
        try:
            await self._smoke(trial)
        except BaseException:
            await trial.aclose()
            raise
        return trial

    async def _smoke(self, trial: Engine) -> None:
        request = InferenceRequest(request_id="ota-smoke", prompt="Say hello.", max_tokens=8)
        try:
            out = await trial.complete(request)
        except EngineError as exc:
            raise UpdateRefused("smoke_failed", str(exc)) from exc
        if out.completion_tokens < 1:
            raise UpdateRefused("smoke_no_tokens", f"finish_reason {out.finish_reason}")
        if out.latency_ms > self._smoke_max_latency_ms:
            raise UpdateRefused("smoke_too_slow", f"{out.latency_ms:.0f} ms > {self._smoke_max_latency_ms:.0f} ms")

    def _remember(self, path: Path, update: ModelUpdate, previous: Engine) -> None:
        """Record the running and previous model; delete older OTA files (keep exactly these two)."""
        prev_path = getattr(previous, "model_path", None)
        state = {
            "current": {"path": str(path), "model_id": update.model_id, "version": update.version,
                        "canary": update.canary},
            "previous": {"path": str(prev_path), "model_id": previous.model_id,
                         "version": previous.model_version} if prev_path else None,
        }
        tmp = part_path(self._dir / STATE_FILE)
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, self._dir / STATE_FILE)
        keep = {path.resolve(), Path(prev_path).resolve() if prev_path else None}
        for old in self._dir.glob("*.gguf"):
            if old.resolve() not in keep:
                old.unlink(missing_ok=True)
                old.with_name(old.name + ".sha256").unlink(missing_ok=True)

    async def _finish(self, update: ModelUpdate, report: str, outcome: str) -> str:
        self.last_report = report
        self.counters["ota_failed" if outcome == "failed" else "ota_ok"] += 1
        UPDATES.labels(outcome).inc()
        log.info("model update", extra={"report": report, "model_id": update.model_id, "canary": update.canary})
        if self._report is not None:
            await self._report(report)
        return report


def startup_models(models_dir: Path) -> list[dict[str, Any]]:
    """The models recorded by the last successful update, newest first ([] when none): try each in turn."""
    try:
        state = json.loads((models_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return []
    return [m for m in (state.get("current"), state.get("previous")) if isinstance(m, dict)]


def _copy_verified(source: Path, dest: Path, *, sha256: str, size: int) -> Path:
    """Copy `source` to `dest` via `<dest>.part`, hashing as it goes; ModelVerifyError on a mismatch."""
    if not source.is_file():
        raise ModelFetchError(f"no such file: {source}")
    if source.stat().st_size != size:
        raise ModelVerifyError(f"{source}: {source.stat().st_size} bytes, expected {size}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = part_path(dest)
    digest = hashlib.sha256()
    with source.open("rb") as src, tmp.open("wb") as out:
        while block := src.read(CHUNK):
            digest.update(block)
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    if digest.hexdigest() != sha256:
        tmp.unlink(missing_ok=True)
        raise ModelVerifyError(f"{source}: sha256 {digest.hexdigest()}, expected {sha256}")
    os.replace(tmp, dest)
    write_sidecar(dest, sha256)
    return dest


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100] or "model"


__all__ = ["ModelManager", "UpdateRefused", "startup_models"]
