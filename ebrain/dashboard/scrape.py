"""Periodic scrapes of each fleet process's Prometheus /metrics, handed on as `scrape` events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Self

from ebrain.dashboard.digest import digest

log = logging.getLogger(__name__)
Emit = Callable[[dict[str, Any]], None]
Targets = Callable[[], dict[str, int]]


async def fetch_metrics(port: int, host: str = "127.0.0.1", timeout_s: float = 2.0) -> str:
    """GET /metrics from a local exporter; raises OSError or TimeoutError when it cannot be read."""
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(f"GET /metrics HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or status[1] != b"200":
        raise OSError(f"unexpected response from :{port}: {head[:40]!r}")
    return body.decode(errors="replace")


async def scrape_once(targets: dict[str, int], emit: Emit, now: Callable[[], float]) -> None:
    """One scrape of every target; a process that is down (killed, restarting) is skipped this round."""

    async def one(name: str, port: int) -> None:
        try:
            values = digest(await fetch_metrics(port))
        except (OSError, TimeoutError, ValueError) as exc:
            log.debug("scrape failed", extra={"child": name, "port": port, "error": str(exc)})
            return
        emit({"kind": "scrape", "t": now(), "name": name, "values": values})

    await asyncio.gather(*(one(name, port) for name, port in targets.items()))


class Scraper:
    """Scrapes `targets()` every `interval_s` while entered; `async with Scraper(...)`; a last scrape on exit."""

    def __init__(self, targets: Targets, emit: Emit, now: Callable[[], float], interval_s: float = 1.0) -> None:
        self._targets, self._emit, self._now, self._interval = targets, emit, now, interval_s
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        while True:
            await scrape_once(self._targets(), self._emit, self._now)
            await asyncio.sleep(self._interval)

    async def __aenter__(self) -> Self:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="demo-scraper")
        return self

    async def __aexit__(self, *exc: object) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
