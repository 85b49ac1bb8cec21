"""Throw-away brokers on free ports for benchmarks and fault tests (not for `ebrain stack`).

A test that kills or restarts a broker needs one of its own; these start Mosquitto and Tansu as child
processes and wait until they listen.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from ebrain.stack import binaries


def free_port() -> int:
    """A TCP port nobody listens on right now (the usual small race is acceptable for tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def wait_listening(port: int, proc: subprocess.Popen[bytes] | None = None, deadline_s: float = 15.0) -> None:
    """Return once `port` accepts connections; RuntimeError if `proc` exits or the deadline passes."""
    end = time.monotonic() + deadline_s
    while not listening(port):
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        if time.monotonic() > end:
            raise RuntimeError(f"nothing listens on {port} after {deadline_s}s")
        time.sleep(0.02)


def mosquitto_conf(port: int, extra: Sequence[str] = ()) -> str:
    """A private broker: no persistence, queue bounded by bytes (not Mosquitto's 1000-message default)."""
    return "\n".join([
        f"listener {port} 127.0.0.1",
        "persistence false",
        "max_queued_messages 0",
        "max_queued_bytes 268435456",
        *(extra or ["allow_anonymous true"]),
        "",
    ])


def start_mosquitto(workdir: Path, port: int, extra: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """Mosquitto on 127.0.0.1:`port` with `extra` config lines (default: anonymous); log in `workdir`."""
    binary, why = binaries.mosquitto()
    if binary is None:
        raise RuntimeError(why)
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / f"mosquitto-{port}.conf"
    conf.write_text(mosquitto_conf(port, extra))
    with (workdir / f"mosquitto-{port}.log").open("ab") as log:
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    wait_listening(port, proc)
    return proc


def start_tansu(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    """Tansu (memory storage) on 127.0.0.1:`port`; a restart on the same port starts empty."""
    binary, why = binaries.tansu()
    if binary is None:
        raise RuntimeError(why)
    url = f"tcp://127.0.0.1:{port}"
    workdir.mkdir(parents=True, exist_ok=True)
    with (workdir / f"tansu-{port}.log").open("ab") as log:
        proc = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=log, stderr=subprocess.STDOUT,
        )
    wait_listening(port, proc)
    return proc


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """Terminate a child we started, then kill it if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class Brokers:
    """A private Mosquitto and Tansu pair (see `start_brokers`)."""

    mosquitto: subprocess.Popen[bytes]
    tansu: subprocess.Popen[bytes]
    mqtt_port: int
    bootstrap: str


def start_brokers(workdir: Path, stack: ExitStack) -> Brokers:
    """Mosquitto and Tansu on free ports, every ebrain topic created; both stop when `stack` closes."""
    from ebrain.config import KafkaSettings  # noqa: PLC0415
    from ebrain.kafka import ensure_topics  # noqa: PLC0415
    from schemas.topics import all_kafka_topics  # noqa: PLC0415

    mqtt_port, kafka_port = free_port(), free_port()
    mosquitto = start_mosquitto(workdir, mqtt_port)
    stack.callback(stop, mosquitto)
    tansu = start_tansu(workdir, kafka_port)
    stack.callback(stop, tansu)
    bootstrap = f"127.0.0.1:{kafka_port}"
    asyncio.run(ensure_topics(KafkaSettings(bootstrap=bootstrap), all_kafka_topics()))
    return Brokers(mosquitto, tansu, mqtt_port, bootstrap)
