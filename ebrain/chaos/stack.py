"""The private stack a chaos run breaks on purpose: its own brokers, proxies and `ebrain` processes.

    devices (`ebrain chaos devices`) --edge-mqtt proxy--> Mosquitto <-- gateway --kafka proxy--> Tansu
                                                                         cloud worker --kafka proxy--^
                                      cloud worker --backend proxy--> llama.cpp server; cloud --> Redis 8

Everything listens on free ports on 127.0.0.1, so runs never touch `ebrain stack` or the machine's brokers.
Tansu keeps data in memory only, so "Kafka down" is its proxy refusing connections (as a broker restart
with durable storage looks to clients); Mosquitto runs with persistence, so a clean restart keeps sessions.
The gateway keeps one client id and the cloud worker one consumer group for the stack's life: a restarted
process resumes where the killed one stopped, as in production.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any, Self

from ebrain.chaos import services
from ebrain.chaos.proxy import FaultProxy
from ebrain.chaos.services import Child, Server, child_env
from ebrain.config import KafkaSettings
from ebrain.procs import LineHandler
from ebrain.stack.private import free_port


class ChaosStack:
    """`async with ChaosStack(workdir) as stack:` everything up and ready; the scenarios' target."""

    def __init__(self, workdir: Path, *, model: str = "tiny", backend_timeout_s: float = 3.0) -> None:
        self.workdir, self.model_spec, self.backend_timeout_s = workdir, model, backend_timeout_s
        self.id = uuid.uuid4().hex[:6]
        self.servers: dict[str, Server] = {}
        self.proxies: dict[str, FaultProxy] = {}
        self.children: dict[str, Child] = {}
        self.edge_pid: int | None = None
        self.model_path: Path | None = None

    # -- the target interface (see ebrain.chaos) -------------------------------------------------------------
    def server(self, name: str) -> Server:
        return self.servers[name]

    def proxy(self, name: str) -> FaultProxy:
        return self.proxies[name]

    def child(self, name: str) -> Child:
        return self.children[name]

    @property
    def kafka(self) -> KafkaSettings:
        return KafkaSettings(bootstrap=f"127.0.0.1:{self.proxies['kafka'].port}")

    # -- lifecycle --------------------------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        try:
            await self._start()
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        for child in reversed(list(self.children.values())):
            await child.stop()
        for proxy in self.proxies.values():
            await proxy.stop()
        for server in reversed(list(self.servers.values())):
            await server.stop()

    async def _start(self) -> None:
        from ebrain.models import resolve_model  # noqa: PLC0415

        self.model_path = await asyncio.to_thread(resolve_model, self.model_spec, self.workdir / "models")
        kafka_proxy = FaultProxy(0, name="kafka")
        await kafka_proxy.start()  # its port first: Tansu must advertise it
        kafka_port = free_port()
        kafka_proxy.upstream_port = kafka_port
        llama_port = free_port()
        self.servers = {
            "mqtt": services.mosquitto(self.workdir / "mosquitto", free_port()),
            "kafka": services.tansu(self.workdir / "tansu", kafka_port, kafka_proxy.port),
            "redis": services.redis8(self.workdir / "redis", free_port()),
            "backend": services.llama_server(self.workdir / "llama", llama_port, self.model_path),
        }
        self.proxies = {"kafka": kafka_proxy, "backend": FaultProxy(llama_port, name="backend"),
                        "edge-mqtt": FaultProxy(self.servers["mqtt"].port, name="edge-mqtt")}
        await asyncio.gather(*(s.start() for s in self.servers.values()))
        for proxy in self.proxies.values():
            await proxy.start()
        logs = self.workdir / "logs"
        self.children = {
            "gateway": Child("gateway", ["gateway", "run"], log_dir=logs, env=self._gateway_env()),
            "cloud": Child("cloud", ["cloud", "worker", "--backend", "router"], log_dir=logs, env=self._cloud_env()),
        }
        await asyncio.gather(*(c.start() for c in self.children.values()))

    def _gateway_env(self) -> dict[str, str]:
        # One gateway, so a plain uplink subscription (share_group ""): Mosquitto restores it from persistence
        # and queues for it across a restart, where a shared one would be gone (mqtt-restart would lose uplinks).
        return child_env(mqtt__port=self.servers["mqtt"].port, kafka_bootstrap=self.kafka.bootstrap,
                         client_id=f"chaos-gateway-{self.id}", share_group="", state_dir=self.workdir / "state")

    def _cloud_env(self) -> dict[str, str]:
        backend = {"name": "llama", "url": f"http://127.0.0.1:{self.proxies['backend'].port}", "model": "llama",
                   "tier": "cpu", "timeout_s": self.backend_timeout_s, "max_concurrency": 2}
        return child_env(
            kafka_bootstrap=self.kafka.bootstrap, backends=json.dumps([backend]),
            redis_url=f"redis://127.0.0.1:{self.servers['redis'].port}/0", cache__semantic="false",
            # Generous limits, but limits: the limiter must consult Redis, so redis-down exercises its policy.
            ratelimit__device_requests=100_000, ratelimit__device_tokens=10_000_000,
            ratelimit__tenant_requests=100_000, ratelimit__tenant_tokens=10_000_000,
            group_id=f"chaos-cloud-{self.id}", session_timeout_ms=6000,
            heartbeat_interval_ms=1000, retry_delay_ms=1000, max_retry_attempts=1000, max_rounds=1,
            default_deadline_ms=300_000, state_dir=self.workdir / "state",
        )

    def fleet(self, run: str, *, devices: int, messages: int, interval_s: float, reply_timeout_s: float,
              on_line: LineHandler) -> Child:
        """The devices of one run (tenant `run`), registered as child `edge`; start it yourself."""
        assert self.model_path is not None

        def lines(name: str, obj: dict[str, Any]) -> None:
            if obj.get("event") == "ready":
                self.edge_pid = int(obj["pid"])
            on_line(name, obj)

        env = child_env(
            mqtt__port=self.proxies["edge-mqtt"].port, model=self.model_path, state_dir=self.workdir / f"edge-{run}",
            tenant=run, n_threads=1, min_confidence=0, escalate_on_truncation="false", max_queue=64,
            reply_timeout_s=reply_timeout_s, publish_timeout_s=2, connect_grace_s=5, telemetry_interval_s=3600,
            drain_timeout_s=10,
        )
        args = ["chaos", "devices", "--run", run, "--devices", str(devices), "--messages", str(messages),
                "--interval", str(interval_s)]
        child = Child("edge", args, log_dir=self.workdir / "logs", env=env, on_line=lines)
        self.children["edge"] = child
        return child
