"""Child processes for the demo and end-to-end tests: started, read line by line, stopped for sure.

Each `ebrain ... run` command prints JSON lines on stdout, starting with {"event": "ready"} once serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

log = logging.getLogger(__name__)
LineHandler = Callable[[str, dict[str, Any]], None]


class ChildProcess:
    """One `ebrain` sub-command as a process. JSON stdout lines go to `on_line`; stderr goes to a log file."""

    def __init__(
        self, name: str, args: list[str], *, log_dir: Path, env: dict[str, str] | None = None,
        on_line: LineHandler | None = None,
    ) -> None:
        self.name, self.args = name, args
        self._log_path = log_dir / f"{name}.log"
        self._env = {**os.environ, **(env or {})}
        self._on_line = on_line or (lambda _name, _obj: None)
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        self.finished = asyncio.Event()

    async def __aenter__(self) -> Self:
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._log_path.open("ab") as err:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ebrain", *self.args,
                stdout=asyncio.subprocess.PIPE, stderr=err, env=self._env,
            )
        self._reader = asyncio.create_task(self._read(), name=f"read-{self.name}")
        return self

    async def _read(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        async for raw in self._proc.stdout:
            line = raw.decode(errors="replace").strip()
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if not isinstance(obj, dict):
                continue
            if obj.get("event") == "ready":
                self.ready.set()
            self._on_line(self.name, obj)
        self.finished.set()

    async def wait_ready(self, timeout_s: float) -> None:
        """Wait for the ready line; a clear error naming the log if the child died or took too long."""
        done = asyncio.create_task(self.finished.wait())
        ready = asyncio.create_task(self.ready.wait())
        try:
            await asyncio.wait({done, ready}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            done.cancel()
            ready.cancel()
        if not self.ready.is_set():
            raise RuntimeError(f"{self.name} did not become ready in {timeout_s}s; see {self._log_path}")

    async def wait(self, timeout_s: float) -> int:
        assert self._proc is not None
        return await asyncio.wait_for(self._proc.wait(), timeout_s)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.send_signal(sig)

    async def __aexit__(self, *exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                log.warning("child did not stop on SIGTERM; killing", extra={"child": self.name})
                proc.kill()
                await proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
