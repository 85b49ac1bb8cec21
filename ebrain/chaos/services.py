"""The chaos stack's pieces as restartable handles: broker servers (Popen) and `ebrain` children (ChildProcess).

Both kinds offer the same verbs to scenarios: `kill()` (SIGKILL, no goodbye), `stop()` (SIGTERM, clean),
`start()` (again, same ports and identity, so sessions and consumer groups resume).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from ebrain.procs import ChildProcess, LineHandler
from ebrain.stack import binaries, private


class Server:
    """A broker or model server: `argv` started in `workdir`, ready once `port` listens (or `ready()` says so)."""

    def __init__(self, name: str, argv: Sequence[str], port: int, workdir: Path, *,
                 ready_s: float = 30.0, ready: Callable[[], bool] | None = None) -> None:
        self.name, self.argv, self.port, self.workdir = name, list(argv), port, workdir
        self._ready_s, self._ready = ready_s, ready
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.proc = await asyncio.to_thread(self._spawn)
        await asyncio.to_thread(self._wait_ready)

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with (self.workdir / f"{self.name}.log").open("ab") as log:
            return subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)

    def _wait_ready(self) -> None:
        assert self.proc is not None
        private.wait_listening(self.port, self.proc, self._ready_s)
        if self._ready is None:
            return
        deadline = time.monotonic() + self._ready_s
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready after {self._ready_s}s; see {self.workdir}/{self.name}.log")
            time.sleep(0.1)

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            await asyncio.to_thread(private.stop, proc)

    async def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            await asyncio.to_thread(proc.wait)


def mosquitto(workdir: Path, port: int) -> Server:
    """Mosquitto with persistence on (a clean restart keeps sessions and their queued QoS 1 messages)."""
    binary, why = binaries.mosquitto()
    if binary is None:
        raise RuntimeError(why)
    conf = workdir / "mosquitto.conf"
    workdir.mkdir(parents=True, exist_ok=True)
    lines = ["allow_anonymous true", "persistence true", f"persistence_location {workdir}/", "autosave_interval 1"]
    if os.geteuid() == 0:
        lines.append("user root")  # else it switches to user mosquitto, who cannot write our workdir
    conf.write_text(private.mosquitto_conf(port, lines))
    return Server("mosquitto", [binary, "-c", str(conf)], port, workdir)


def tansu(workdir: Path, port: int, advertised_port: int) -> Server:
    """Tansu (memory storage) listening on `port`, telling clients to come in through `advertised_port`."""
    binary, why = binaries.tansu()
    if binary is None:
        raise RuntimeError(why)
    return Server("tansu", [binary, "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
                            "--advertised-listener-url", f"tcp://127.0.0.1:{advertised_port}",
                            "--storage-engine", "memory://tansu/"], port, workdir)


def redis8(workdir: Path, port: int) -> Server:
    """Redis 8 without persistence (the cache and limits are soft state)."""
    binary, why = binaries.redis_server()
    if binary is None:
        raise RuntimeError(why)
    return Server("redis", [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                            "--dir", str(workdir)], port, workdir)


def llama_server(workdir: Path, port: int, model: Path) -> Server:
    """The llama.cpp OpenAI-compatible server (`python -m cloud.llama_server`), served as model `llama`."""
    url = f"http://127.0.0.1:{port}/v1/models"

    def ready() -> bool:
        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    argv = [sys.executable, "-m", "cloud.llama_server", "--model", str(model), "--host", "127.0.0.1",
            "--port", str(port), "--n_ctx", "512", "--n_threads", "1", "--model_alias", "llama"]
    return Server("llama-server", argv, port, workdir, ready_s=90.0, ready=ready)


class Child:
    """An `ebrain` sub-command that can be killed and started again with the same arguments and environment."""

    def __init__(self, name: str, args: list[str], *, log_dir: Path, env: dict[str, str],
                 on_line: LineHandler | None = None, ready_s: float = 120.0) -> None:
        self.name, self.args, self.env = name, args, env
        self._log_dir, self._on_line, self._ready_s = log_dir, on_line, ready_s
        self.proc: ChildProcess | None = None
        self.starts = 0

    async def start(self, *, wait_ready: bool = True) -> None:
        if self.proc is not None:
            return
        proc = ChildProcess(self.name, self.args, log_dir=self._log_dir, env=self.env, on_line=self._on_line)
        await proc.__aenter__()
        self.proc = proc
        self.starts += 1
        if wait_ready:
            await proc.wait_ready(self._ready_s)

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            await proc.__aexit__(None, None, None)

    async def kill(self) -> None:
        """SIGKILL and reap: nothing is flushed, acked or committed on the way out."""
        proc = self.proc
        if proc is None:
            return
        proc.kill(signal.SIGKILL)
        with contextlib.suppress(TimeoutError, AssertionError):
            await proc.wait(15)
        await self.stop()


def limit_file_size(pid: int, limit: int | None) -> None:
    """Set the process's RLIMIT_FSIZE soft limit (0: every file write fails with EFBIG, like a full disk)."""
    _soft, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard if limit is None else limit, hard))


def child_env(**values: object) -> dict[str, str]:
    """EBRAIN_ variables for a child, from keyword names (MQTT__PORT=1 -> EBRAIN_MQTT__PORT=1)."""
    return {f"EBRAIN_{k.upper()}": str(v) for k, v in values.items() if v is not None} | {
        "PYTHONUNBUFFERED": "1", "PATH": os.environ.get("PATH", "")}
