"""The demo's running fleet: its processes by name (gateway, cloud, ingest, edge-0 ...), each killable and
restartable, so a chaos scenario can act on it while the demo's ledger watches that nothing gets lost.

A restarted process runs the same command with the same environment (and the same metrics port); an `edge run`
device that is restarted runs its prompt list again with new request ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from ebrain.procs import ChildProcess, LineHandler

Emit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class ProcSpec:
    """How to start one process: an `ebrain` sub-command and its environment."""

    name: str
    args: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    ready_timeout_s: float | None = 60.0  # None: do not wait for its ready line (devices just run)
    metrics_port: int = 0


class Fleet:
    """`async with Fleet(log_dir, ...) as fleet`: start, kill, restart processes by name; all stop on exit."""

    def __init__(self, log_dir: Path, *, on_line: LineHandler, emit: Emit) -> None:
        self.log_dir = log_dir
        self._on_line, self._emit = on_line, emit
        self._specs: dict[str, ProcSpec] = {}
        self._procs: dict[str, ChildProcess] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._reaped: dict[str, asyncio.Event] = {}  # set once the fleet itself has stopped and reaped it
        self._exit_as: dict[str, str] = {}  # name -> the state its next exit is reported as (killed, stopped)

    @property
    def names(self) -> list[str]:
        """Every process started so far, in start order."""
        return list(self._specs)

    def __getitem__(self, name: str) -> ChildProcess:
        return self._procs[name]

    def running(self, name: str) -> bool:
        return name in self._procs and not self._procs[name].finished.is_set()

    def metrics_targets(self) -> dict[str, int]:
        """name -> /metrics port of every process that serves one."""
        return {name: spec.metrics_port for name, spec in self._specs.items() if spec.metrics_port}

    async def start(self, specs: Iterable[ProcSpec]) -> None:
        """Start these processes together; return once each that has a ready timeout printed its ready line."""
        started = [await self._spawn(spec) for spec in specs]
        await asyncio.gather(*(self._ready(spec) for spec in started))

    async def _spawn(self, spec: ProcSpec) -> ProcSpec:
        if self.running(spec.name):
            raise RuntimeError(f"{spec.name} is already running")
        self._specs[spec.name] = spec
        self._emit({"kind": "proc", "name": spec.name, "state": "starting"})
        child = ChildProcess(spec.name, list(spec.args), log_dir=self.log_dir, env=dict(spec.env),
                             on_line=self._on_line)
        await child.__aenter__()
        self._procs[spec.name] = child
        self._reaped[spec.name] = reaped = asyncio.Event()
        self._watchers[spec.name] = asyncio.create_task(self._watch(spec.name, child, reaped),
                                                        name=f"watch-{spec.name}")
        return spec

    async def _ready(self, spec: ProcSpec) -> None:
        if spec.ready_timeout_s is not None:
            await self._procs[spec.name].wait_ready(spec.ready_timeout_s)
            self._emit({"kind": "proc", "name": spec.name, "state": "ready"})
        else:
            self._emit({"kind": "proc", "name": spec.name, "state": "running"})

    async def _watch(self, name: str, child: ChildProcess, reaped: asyncio.Event) -> None:
        """Report the exit: when its stdout closes, or when the fleet stopped it (its reader may be cancelled
        before it saw the end of stdout)."""
        waits = {asyncio.create_task(child.finished.wait()), asyncio.create_task(reaped.wait())}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        rc: int | None = None
        # A process the fleet stops is being reaped by ChildProcess.__aexit__, which owns its exit status.
        if not reaped.is_set() and self._exit_as.get(name) != "stopped":
            with contextlib.suppress(TimeoutError):
                rc = await child.wait(15)
        self._emit({"kind": "proc", "name": name, "state": self._exit_as.pop(name, "exited"), "rc": rc})

    async def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` (default SIGKILL) and wait until the process is gone; it stays down until `restart`."""
        child = self._procs[name]
        self._exit_as[name] = "killed"
        child.kill(sig)
        await self._watchers[name]

    async def stop(self, name: str) -> None:
        """Stop one process cleanly (SIGTERM, then SIGKILL after 15 s)."""
        if self.running(name):
            self._exit_as[name] = "stopped"
        else:
            await self._watchers[name]  # it exited on its own: its watcher reports that first
        await self._reap(name)

    async def _reap(self, name: str) -> None:
        await self._procs[name].__aexit__(None, None, None)
        self._reaped[name].set()
        await self._watchers[name]

    async def restart(self, name: str, *, sig: int | None = None) -> None:
        """Start `name` again with its spec, after stopping it (cleanly, or with `sig`) if it still runs."""
        if self.running(name):
            await (self.kill(name, sig) if sig is not None else self.stop(name))
        else:
            await self._reap(name)
        self._emit({"kind": "proc", "name": name, "state": "restarting"})
        spec = await self._spawn(self._specs[name])
        await self._ready(spec)

    def child(self, name: str) -> FleetChild:
        """A handle on one process by name, shaped like ebrain.chaos's children (`kill()`, `start()`, `stop()`)."""
        if name not in self._specs:
            raise KeyError(f"no process {name!r} in the fleet (have: {', '.join(self._specs)})")
        return FleetChild(self, name)

    async def wait_finished(self, names: Iterable[str], deadline_s: float) -> list[str]:
        """Wait until these processes have exited on their own; the names still running at the deadline.

        Follows restarts: it waits on whichever process runs under each name at the time.
        """
        pending = list(names)
        loop = asyncio.get_running_loop()
        until = loop.time() + deadline_s
        while pending and loop.time() < until:
            waits = [asyncio.create_task(self._procs[n].finished.wait()) for n in pending]
            try:
                # Wake up now and then: a restart swaps the process behind a name.
                await asyncio.wait(waits, timeout=min(1.0, max(until - loop.time(), 0)),
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in waits:
                    task.cancel()
            pending = [n for n in pending if self.running(n)]
        return pending

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            for name in reversed(self.names):
                await self.stop(name)
        finally:
            for task in self._watchers.values():
                task.cancel()
            await asyncio.gather(*self._watchers.values(), return_exceptions=True)


@dataclass(frozen=True)
class FleetChild:
    """One named process of a Fleet: what a chaos scenario's step acts on."""

    fleet: Fleet
    name: str

    async def kill(self) -> None:
        await self.fleet.kill(self.name)

    async def stop(self) -> None:
        await self.fleet.stop(self.name)

    async def start(self) -> None:
        """Start it again (with its spec) and wait until it is ready."""
        await self.fleet.restart(self.name)
