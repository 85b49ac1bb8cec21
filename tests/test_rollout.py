"""Canary rollout on the real Kafka protocol (Tansu): ModelUpdate orders out, synthetic device telemetry in.

A small simulated fleet consumes `ebrain.down.model_update`, switches version, and reports cumulative counters
whose escalation rate and latency depend on the version it runs. A regressing canary (more escalations, or
slower) is rolled back; a good one is promoted to every device.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

pytest.importorskip("aiokafka")

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from ebrain.config import KafkaSettings
from ebrain.kafka import client_options, ensure_topics, producer_options
from schemas import ModelUpdate, Telemetry
from schemas.codec import decode, encode
from schemas.envelope import make
from trainers.adapters.kafka import MODEL_UPDATE_TOPIC, TELEMETRY_TOPIC, TelemetryWindow, UpdatePublisher
from trainers.adapters.registry import Registry
from trainers.core.rollout import RolloutConfig
from trainers.rollout import RolloutResult, canary_rollout

pytestmark = pytest.mark.integration


class Fleet:
    """Devices that obey ModelUpdate orders and report telemetry every tick."""

    def __init__(self, kafka: KafkaSettings, tenant: str, n: int, rates: dict[str, float], since: datetime,
                 latency_ms: dict[str, float] | None = None) -> None:
        self.kafka, self.tenant, self.rates, self.since = kafka, tenant, rates, since
        self.latency_ms = latency_ms or {}
        self.version = {f"d{i}": "v0" for i in range(n)}
        self.orders: list[tuple[str, str, bool]] = []
        self.counters = {d: {"local": 0.0, "escalated": 0.0, "failed": 0.0, "latency_ms_sum": 0.0}
                         for d in self.version}

    async def _orders(self) -> None:
        consumer = AIOKafkaConsumer(MODEL_UPDATE_TOPIC, group_id=None, auto_offset_reset="earliest",
                                    **client_options(self.kafka))
        await consumer.start()
        try:
            async for msg in consumer:
                env = decode(msg.value)
                if env.tenant == self.tenant and env.time >= self.since and isinstance(env.data, ModelUpdate):
                    self.version[env.device] = env.data.version
                    self.orders.append((env.device, env.data.version, env.data.canary))
        finally:
            await consumer.stop()

    async def _telemetry(self) -> None:
        producer = AIOKafkaProducer(**producer_options(self.kafka))
        await producer.start()
        try:
            while True:
                for device, version in self.version.items():
                    c = self.counters[device]
                    escalated = round(10 * self.rates[version])
                    c["local"] += 10 - escalated
                    c["escalated"] += escalated
                    c["latency_ms_sum"] += 10 * self.latency_ms.get(version, 0.0)
                    tel = Telemetry(model_id="edge", model_version=version, uptime_s=1.0, counters=dict(c))
                    env = make(tel, tenant=self.tenant, device=device)
                    await producer.send(TELEMETRY_TOPIC, encode(env), key=env.key.encode())
                await producer.flush()
                await asyncio.sleep(0.05)  # the devices' reporting interval, not a wait for a condition
        finally:
            await producer.stop()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Fleet]:
        tasks = [asyncio.create_task(self._orders()), asyncio.create_task(self._telemetry())]
        try:
            yield self
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def _until(cond: object, deadline_s: float = 15.0) -> None:
    end = time.monotonic() + deadline_s
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < end, "condition not met before the deadline"
        await asyncio.sleep(0.05)


def _registry(tmp: Path) -> Registry:
    registry = Registry(tmp / "registry")
    for name in ("base", "cand"):
        (tmp / name).write_bytes(name.encode() * 100)
    registry.register(tmp / "base", parent=None, status="base")
    registry.register(tmp / "cand", parent="v0", status="candidate")
    return registry


async def _rollout(kafka: KafkaSettings, tmp: Path, tenant: str, rates: dict[str, float],
                   latency_ms: dict[str, float] | None = None) -> tuple[Registry, Fleet, RolloutResult]:
    await ensure_topics(kafka, [MODEL_UPDATE_TOPIC, TELEMETRY_TOPIC])
    registry = _registry(tmp)
    since = datetime.now(UTC)
    fleet = Fleet(kafka, tenant, 8, rates, since, latency_ms)
    config = RolloutConfig(canary_fraction=0.25, min_requests=30)
    async with fleet.running(), UpdatePublisher(kafka) as pub, TelemetryWindow(kafka, since=since) as window:
        result = await canary_rollout(registry, "v1", [(tenant, d) for d in fleet.version], publisher=pub,
                                      window=window, config=config, deadline_s=30.0)
        expected = "v1" if result.verdict == "promote" else "v0"
        await _until(lambda: all(v == expected for v in fleet.version.values()))
    return registry, fleet, result


async def test_a_regressing_canary_is_rolled_back(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    registry, fleet, result = await _rollout(kafka_settings, tmp_path, "rb", {"v0": 0.2, "v1": 0.7})
    assert result.verdict == "rollback"
    assert "escalation rate" in result.reason
    assert len(result.canary) == 2  # 25% of 8
    assert result.decision is not None
    assert result.decision.canary.escalation_rate == pytest.approx(0.7)
    assert result.decision.control.escalation_rate == pytest.approx(0.2)
    canary_devices = {c.split("/")[1] for c in result.canary}
    # Canary got v1 (canary=True), then v0 back; the control group never saw v1.
    assert {(d, v) for d, v, _ in fleet.orders} == {(d, "v1") for d in canary_devices} | {
        (d, "v0") for d in canary_devices}
    entry = registry.entry("v1")
    assert entry["status"] == "rolled_back"
    assert entry["history"][-1]["decision"]["canary"]["escalation_rate"] == pytest.approx(0.7)
    assert registry.load()["current"] == "v0"


async def test_a_good_canary_is_promoted_to_all(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    registry, fleet, result = await _rollout(kafka_settings, tmp_path, "ok", {"v0": 0.3, "v1": 0.2})
    assert result.verdict == "promote", result.reason
    assert all(v == "v1" for v in fleet.version.values())
    assert sum(1 for _, v, canary in fleet.orders if v == "v1" and canary) == 2
    assert registry.load()["current"] == "v1"
    assert registry.entry("v1")["status"] == "promoted"


async def test_a_slower_canary_is_rolled_back_on_latency(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    registry, fleet, result = await _rollout(kafka_settings, tmp_path, "slow", {"v0": 0.2, "v1": 0.2},
                                             {"v0": 100.0, "v1": 400.0})
    assert result.verdict == "rollback"
    assert "latency 400 ms vs 100 ms" in result.reason
    assert "escalation" not in result.reason
    summary = result.summary()
    assert summary["canary"]["latency_ms"] == pytest.approx(400.0)
    assert summary["control"]["latency_ms"] == pytest.approx(100.0)
    assert summary["canary_devices"] == result.canary
    assert registry.entry("v1")["status"] == "rolled_back"
    assert all(v == "v0" for v in fleet.version.values())
