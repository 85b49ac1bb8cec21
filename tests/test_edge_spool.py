"""Store and forward on the real Mosquitto: spool while the link is down, drain in order when it returns,
including a kill -9 of the agent process while offline and a restart with the broker reachable."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from ebrain.config import MqttSettings
from ebrain.inference.llama import LlamaCppEngine
from ebrain.models.tiny import write_tiny_llama
from ebrain.mqtt import MqttClient
from edge.agent import EdgeAgent
from edge.core.policy import PolicyConfig
from edge.forward import StoreAndForward
from edge.link import MqttLink
from edge.spool import Spool
from schemas import Envelope, Escalation, InferenceRequest, InferenceResult, Telemetry, decode
from schemas.topics import mqtt_uplink

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
POLICY = PolicyConfig(min_confidence=0.0, escalate_on_truncation=False, refusal_patterns=())


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("models") / "tiny.gguf")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proxy:
    """A TCP proxy to Mosquitto that the test can cut (connections closed, port refusing) and restore."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.port = target, _free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self._writers -= {writer, up_writer}


@contextlib.asynccontextmanager
async def collector(mqtt: MqttSettings, tenant: str, device: str) -> AsyncIterator[asyncio.Queue[Envelope[Any]]]:
    """Everything the device publishes upstream, decoded, in arrival order."""
    seen: asyncio.Queue[Envelope[Any]] = asyncio.Queue()
    async with MqttClient(mqtt, client_id=f"obs-{device}", clean_start=True) as client:
        await client.subscribe(mqtt_uplink(tenant, device, "+"))

        async def read() -> None:
            async for message in client.messages():
                await seen.put(decode(message.payload))

        task = asyncio.create_task(read())
        try:
            yield seen
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _collect_until(seen: asyncio.Queue[Envelope[Any]], want: set[str], deadline_s: float
                         ) -> list[Envelope[Any]]:
    """Envelopes in arrival order until every request id in `want` was seen (duplicates kept)."""
    got: list[Envelope[Any]] = []
    async with asyncio.timeout(deadline_s):
        while not want <= {_rid(e) for e in got}:
            got.append(await seen.get())
    return got


def _rid(envelope: Envelope[Any]) -> str | None:
    data = envelope.data
    if isinstance(data, InferenceResult):
        return data.request_id
    if isinstance(data, Escalation):
        return data.request.request_id
    return None


def _first_seen_order(envelopes: list[Envelope[Any]]) -> list[str]:
    order: list[str] = []
    for e in envelopes:
        rid = _rid(e)
        if rid is not None and rid not in order:
            order.append(rid)
    return order


async def _until(condition: Callable[[], bool], deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_link_down_spools_then_drains_in_order_when_it_returns(
    mqtt_settings: MqttSettings, tiny_model: Path, tmp_path: Path
) -> None:
    uid = uuid.uuid4().hex[:8]
    tenant, device = "t-spool", f"d{uid}"
    proxy = Proxy((mqtt_settings.host, mqtt_settings.port))
    await proxy.up()
    via_proxy = mqtt_settings.model_copy(update={"port": proxy.port, "session_expiry_s": 0})
    engine = await LlamaCppEngine.load(tiny_model, model_id="tiny", model_version="t1", n_threads=1)
    link = MqttLink(via_proxy, client_id=f"edge-{uid}")
    forward = StoreAndForward(link, Spool(tmp_path / "spool.db"), publish_timeout_s=1.0)
    async with collector(mqtt_settings, tenant, device) as seen, engine, link, forward:
        await link.wait_connected(30)
        agent = EdgeAgent(tenant=tenant, device=device, engine=engine, mqtt=link, uplink=forward, policy=POLICY,
                          reply_timeout_s=0.05, telemetry_interval_s=3600)
        async with agent:
            first = await agent.handle(InferenceRequest(request_id=f"{uid}-0", prompt="hi", max_tokens=4))
            assert forward.counters["direct"] == 1  # link up: straight to the broker
            await proxy.cut()
            await _until(lambda: not link.connected, 10)
            ids = [first.result.request_id]
            for i in range(1, 7):
                tags = ("cloud",) if i % 3 == 0 else ()
                request = InferenceRequest(request_id=f"{uid}-{i}", prompt=f"q{i}", tags=tags, max_tokens=4)
                await agent.handle(request)
                ids.append(request.request_id)
                if i == 3:
                    await agent.publish_telemetry()
            assert forward.depth == 7  # 6 answers/escalations + 1 telemetry, all on disk
            health = agent.telemetry()
            assert health.spool_depth == 7
            assert health.model_version == "t1"
            assert {"tokens_per_s", "rss_mb", "cpu_pct", "escalation_rate", "spool_spooled"} <= set(health.counters)
            assert health.counters["tokens_per_s"] > 0
            assert 0 < health.counters["escalation_rate"] < 1
            await proxy.up()
            got = await _collect_until(seen, set(ids), 30)
            await _until(lambda: forward.depth == 0, 10)  # the telemetry too was acknowledged, so it arrived
            while not any(isinstance(e.data, Telemetry) for e in got):
                got.append(await asyncio.wait_for(seen.get(), 10))
    assert _first_seen_order(got) == ids  # nothing lost, nothing reordered
    kinds = [type(e.data) for e in got]
    assert Escalation in kinds
    assert InferenceResult in kinds
    assert forward.counters["drained"] == 7
    # Priority: the telemetry spooled between answers left after every answer and escalation.
    telemetry_at = next(i for i, e in enumerate(got) if isinstance(e.data, Telemetry))
    assert all(_rid(e) is not None for e in got[:telemetry_at])
    assert {_rid(e) for e in got[:telemetry_at]} == set(ids)


def _agent_cmd(model: Path, requests: int, forever: bool) -> list[str]:
    cmd = [sys.executable, "-m", "ebrain", "edge", "run", "--model", str(model), "--requests", str(requests)]
    return [*cmd, "--forever"] if forever else cmd


def _agent_env(state: Path, port: int, tenant: str, device: str, drain_s: float) -> dict[str, str]:
    return {
        **os.environ, "EBRAIN_STATE_DIR": str(state), "EBRAIN_MQTT__PORT": str(port), "EBRAIN_TENANT": tenant,
        "EBRAIN_DEVICE": device, "EBRAIN_CONNECT_GRACE_S": "0", "EBRAIN_REPLY_TIMEOUT_S": "0.05",
        "EBRAIN_DRAIN_TIMEOUT_S": str(drain_s), "EBRAIN_MIN_CONFIDENCE": "0", "EBRAIN_ESCALATE_ON_TRUNCATION": "false",
        "EBRAIN_N_THREADS": "1", "EBRAIN_MQTT__SESSION_EXPIRY_S": "0",
    }


async def test_kill_9_while_offline_then_restart_delivers_everything_in_order(
    mqtt_settings: MqttSettings, tiny_model: Path, tmp_path: Path
) -> None:
    uid = uuid.uuid4().hex[:8]
    tenant, device = "t-spool", f"k{uid}"
    state = tmp_path / "state"
    closed_port = _free_port()  # nothing listens there: the broker is unreachable
    proc = await asyncio.create_subprocess_exec(
        *_agent_cmd(tiny_model, 6, forever=True), cwd=ROOT, env=_agent_env(state, closed_port, tenant, device, 0),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    lines: list[dict[str, object]] = []
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            while not lines or lines[-1].get("event") != "done":
                line = await proc.stdout.readline()
                assert line, "agent exited early"
                lines.append(json.loads(line))
    finally:
        proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), 10)
    assert proc.returncode == -signal.SIGKILL
    ids = [str(line["request_id"]) for line in lines if line.get("event") == "outcome"]
    assert len(ids) == 6
    spool = Spool(state / "spool" / f"{tenant}-{device}.db")
    assert len(spool) == 7  # every answer/escalation and the final telemetry survived the kill
    spool.close()

    async with collector(mqtt_settings, tenant, device) as seen:
        restart = await asyncio.create_subprocess_exec(
            *_agent_cmd(tiny_model, 0, forever=False), cwd=ROOT,
            env=_agent_env(state, mqtt_settings.port, tenant, device, 30),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        assert await asyncio.wait_for(restart.wait(), 60) == 0
        got = await _collect_until(seen, set(ids), 20)
        telemetry = [e for e in got if isinstance(e.data, Telemetry)]
        while len(telemetry) < 2:  # the first run's, then the restarted run's own
            envelope = await asyncio.wait_for(seen.get(), 20)
            got.append(envelope)
            if isinstance(envelope.data, Telemetry):
                telemetry.append(envelope)
    assert _first_seen_order(got) == ids
    first_telemetry = got.index(telemetry[0])
    assert all(_rid(e) is not None for e in got[:first_telemetry])  # answers and escalations went first
    reopened = Spool(state / "spool" / f"{tenant}-{device}.db")
    assert len(reopened) == 0  # deleted after PUBACK
    reopened.close()
