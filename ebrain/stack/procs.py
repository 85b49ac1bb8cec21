"""Processes we start: spawn with a log file, pid files that prove identity, ready waits, safe stops.

A pid file records the pid *and* the process identity (executable path and kernel start time), so `down`
never signals an unrelated process that happens to reuse the pid.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ebrain.stack.core import ServiceStartError

log = logging.getLogger("ebrain.stack")

_POLL_S = 0.05
# Children started by this Python process: kept so they are reaped (no zombies, no ResourceWarning).
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class PidRecord:
    pid: int
    identity: str
    argv: list[str]
    host: str
    port: int
    address: str
    log: str


def read_record(path: Path) -> PidRecord | None:
    """The pid file's record; None if absent or unreadable (a corrupt file counts as stale)."""
    try:
        return PidRecord(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def write_record(path: Path, rec: PidRecord) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(rec)))
    tmp.replace(path)


def identity(pid: int) -> str | None:
    """"<exe> <start time>" of a live process; None if gone, a zombie, or not inspectable."""
    _reap(pid)
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            exe = os.readlink(proc / "exe")
        except (OSError, IndexError):
            return None
        return None if stat[0] in ("Z", "X") else f"{exe} {stat[19]}"
    return _ps_identity(pid)


def _ps_identity(pid: int) -> str | None:
    """No /proc (macOS): the command name and start time from ps."""
    out = subprocess.run(["ps", "-o", "stat=,lstart=,comm=", "-p", str(pid)],  # noqa: S607
                         capture_output=True, text=True, check=False).stdout.strip()
    if not out or out.startswith("Z"):
        return None
    return out.split(None, 1)[1]


def is_ours(rec: PidRecord) -> bool:
    current = identity(rec.pid)
    return current is not None and current == rec.identity


def _reap(pid: int) -> None:
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        del _children[pid]


def spawn(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start argv in its own session (Ctrl-C on the terminal does not reach it), output to log_path."""
    with log_path.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    _children[proc.pid] = proc
    log.info("stack process started", extra={"pid": proc.pid, "argv": argv, "log": str(log_path)})
    return proc


def wait_ready(proc: subprocess.Popen[bytes], ready: Callable[[], bool], name: str,
               log_path: Path, timeout_s: float) -> None:
    """Return once ready() is true; raise ServiceStartError if proc exits first or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        code = proc.poll()
        if code is not None:
            raise ServiceStartError(
                f"{name} exited with code {code} before it was ready; log: {log_path}\n{_tail(log_path)}")
        if time.monotonic() > deadline:
            raise ServiceStartError(
                f"{name} not ready after {timeout_s:.0f}s; log: {log_path}\n{_tail(log_path)}")
        time.sleep(_POLL_S)


def _tail(path: Path, lines: int = 10) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def stop(rec: PidRecord, timeout_s: float) -> bool:
    """SIGTERM the recorded process if it is still ours, SIGKILL after timeout_s. True if we signalled it."""
    if not is_ours(rec):
        return False
    _signal(rec.pid, signal.SIGTERM)
    if not _wait_gone(rec, timeout_s):
        log.warning("stack process ignored SIGTERM, killing", extra={"pid": rec.pid})
        _signal(rec.pid, signal.SIGKILL)
        if not _wait_gone(rec, 5.0):
            raise ServiceStartError(f"pid {rec.pid} survived SIGKILL")
    _children.pop(rec.pid, None)
    log.info("stack process stopped", extra={"pid": rec.pid})
    return True


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return


def _wait_gone(rec: PidRecord, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while is_ours(rec):
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL_S)
    return True
