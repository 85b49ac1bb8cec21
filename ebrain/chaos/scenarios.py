"""The scenario registry: each fault as a pair of thin adapters, `inject(target)` and `clear(target)`.

A scenario holds its fault for `duration_s` between the two calls (the runner, or the demo, does the
waiting). `flow` names what "flowing again" means for its recovery time: `uplink` (a device message reaching
Kafka) for faults on the device -> Kafka path, `reply` (a cloud answer, status ok, reaching Kafka) for faults
behind Kafka.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ebrain.chaos.proxy import FaultProxy
from ebrain.chaos.services import Child, Server, limit_file_size


class Target(Protocol):
    """What a scenario may break: servers `mqtt`, `kafka`, `redis`, `backend`; proxies `kafka`, `backend`,
    `edge-mqtt` (between the devices and Mosquitto); children `gateway`, `cloud`, `edge` (the devices)."""

    edge_pid: int | None

    def server(self, name: str) -> Server: ...

    def proxy(self, name: str) -> FaultProxy: ...

    def child(self, name: str) -> Child: ...


Step = Callable[[Target], Awaitable[None]]


async def _nothing(_: Target) -> None:
    return None


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    duration_s: float
    flow: Literal["uplink", "reply"]
    inject: Step
    clear: Step = field(default=_nothing)


def _kill(child: str) -> Step:
    async def step(t: Target) -> None:
        await t.child(child).kill()
    return step


def _start(child: str) -> Step:
    async def step(t: Target) -> None:
        await t.child(child).start()
    return step


def _proxy(name: str, mode: Literal["up", "down", "hang", "http503"]) -> Step:
    async def step(t: Target) -> None:
        await t.proxy(name).set_mode(mode)
    return step


def _server(name: str, action: Literal["stop", "kill", "start"]) -> Step:
    async def step(t: Target) -> None:
        await getattr(t.server(name), action)()
    return step


async def _disk_full(t: Target) -> None:
    await t.proxy("edge-mqtt").set_mode("down")  # offline, so every message must go through the spool
    assert t.edge_pid is not None, "the devices are not running"
    await asyncio.to_thread(limit_file_size, t.edge_pid, 0)


async def _disk_freed(t: Target) -> None:
    assert t.edge_pid is not None
    await asyncio.to_thread(limit_file_size, t.edge_pid, None)
    await t.proxy("edge-mqtt").set_mode("up")


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("gateway-kill", "gateway killed with SIGKILL, restarted with the same client id", 2.0, "uplink",
             _kill("gateway"), _start("gateway")),
    Scenario("worker-kill", "cloud worker killed with SIGKILL while escalations stream in, restarted", 2.0,
             "reply", _kill("cloud"), _start("cloud")),
    Scenario("kafka-down", "Kafka unreachable (connections refused and cut)", 15.0, "uplink",
             _proxy("kafka", "down"), _proxy("kafka", "up")),
    Scenario("mqtt-restart", "Mosquitto stopped cleanly and started again (persistence on)", 3.0, "uplink",
             _server("mqtt", "stop"), _server("mqtt", "start")),
    Scenario("backend-down", "model server refuses connections", 10.0, "reply",
             _proxy("backend", "down"), _proxy("backend", "up")),
    Scenario("backend-503", "model server answers 503 Service Unavailable", 10.0, "reply",
             _proxy("backend", "http503"), _proxy("backend", "up")),
    Scenario("backend-hang", "model server accepts and never answers", 10.0, "reply",
             _proxy("backend", "hang"), _proxy("backend", "up")),
    Scenario("redis-down", "Redis killed: cache bypassed, limits fail open (EBRAIN_RATELIMIT__ON_REDIS_ERROR)",
             10.0, "reply", _server("redis", "kill"), _server("redis", "start")),
    Scenario("edge-offline", "devices lose their network: answers spool on disk, drain on reconnect", 60.0,
             "uplink", _proxy("edge-mqtt", "down"), _proxy("edge-mqtt", "up")),
    Scenario("edge-disk-full", "devices offline with a full disk: requests refused with the reason, counted",
             10.0, "uplink", _disk_full, _disk_freed),
)}
