"""The flywheel's live fleet: the telemetry window sees only the fleet, devices get the workload file, and an edge
agent's telemetry carries the latency counter the rollout compares (real Mosquitto, real llama.cpp tiny model)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from ebrain.config import KafkaSettings, MqttSettings
from ebrain.inference.llama import LlamaCppEngine
from ebrain.models.tiny import write_tiny_llama
from ebrain.mqtt import MqttClient
from edge.agent import EdgeAgent
from edge.core.policy import PolicyConfig
from edge.prompts import load
from edge.uplink import MqttUplink
from schemas import InferenceRequest
from trainers.adapters.registry import Registry
from trainers.core.rollout import Sample, cohort_stats
from trainers.fleet import FleetConfig, FleetWindow, live_rollout, write_workload
from trainers.settings import RolloutSettings, TrainerSettings


class ListWindow:
    def __init__(self, samples: list[Sample]) -> None:
        self._samples = samples

    def samples(self) -> list[Sample]:
        return list(self._samples)

    async def wait_new(self, timeout_s: float) -> bool:
        return False


async def test_the_window_keeps_only_the_fleet_devices() -> None:
    mine = [Sample("fw/a", "v1", t, {"local": 10.0 * t, "escalated": 0.0}) for t in (0.0, 1.0)]
    other = [Sample("demo/a", "v1", t, {"local": 0.0, "escalated": 50.0 * t}) for t in (0.0, 1.0)]
    window = FleetWindow(ListWindow([*mine, *other]), ["fw/a", "fw/b"])
    assert window.samples() == mine
    assert cohort_stats(window.samples(), "v1").escalation_rate == 0.0
    assert await window.wait_new(0.01) is False


def test_the_workload_file_is_what_edge_run_reads(tmp_path: Path) -> None:
    path = write_workload(["What is a pump?", 'Say "hi".'], tmp_path / "w" / "prompts.jsonl", max_tokens=48)
    prompts = load(str(path))
    assert [p.text for p in prompts] == ["What is a pump?", 'Say "hi".']
    assert {p.max_tokens for p in prompts} == {48}


@pytest.mark.integration
async def test_telemetry_counts_local_inference_latency(mqtt_settings: MqttSettings, tmp_path: Path) -> None:
    model = write_tiny_llama(tmp_path / "tiny.gguf")
    device = f"lat{uuid.uuid4().hex[:8]}"
    engine = await LlamaCppEngine.load(model, model_id="tiny", model_version="t1", n_threads=1)
    async with engine, MqttClient(mqtt_settings, client_id=f"edge-{device}") as client:
        agent = EdgeAgent(tenant="t-lat", device=device, engine=engine, mqtt=client, uplink=MqttUplink(client),
                          policy=PolicyConfig(escalation="never"), telemetry_interval_s=3600)
        async with agent:
            assert agent.telemetry().counters["latency_ms_sum"] == 0.0
            latencies = []
            for i in range(2):
                outcome = await agent.handle(InferenceRequest(request_id=f"r{i}", prompt="Hello", max_tokens=8))
                assert outcome.result.route == "local"
                latencies.append(outcome.result.latency_ms)
            counters = agent.telemetry().counters
    assert counters["local"] == 2
    assert counters["latency_ms_sum"] == pytest.approx(sum(latencies))
    assert counters["latency_ms_sum"] > 0


@pytest.mark.e2e
async def test_a_live_fleet_takes_the_canary_by_ota_and_the_rollout_decides_on_its_telemetry(
    mqtt_settings: MqttSettings, kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    """Gateway, cloud worker and two `edge run` devices as processes (tiny model): the candidate reaches the canary
    by OTA, both cohorts report telemetry with latency, the verdict promotes, the registry follows."""
    registry = Registry(tmp_path / "registry")
    registry.register(write_tiny_llama(tmp_path / "base.gguf", seed=0), parent=None, status="base")
    registry.register(write_tiny_llama(tmp_path / "cand.gguf", seed=1), parent="v0", status="candidate")
    # Random weights: latency and escalation carry no signal here, so only the plumbing is judged.
    rollout = RolloutSettings(canary_fraction=0.5, min_requests=4, max_latency_ratio=1000.0,
                              max_escalation_increase=1.0)
    settings = TrainerSettings(registry_dir=tmp_path / "registry", rollout=rollout, eval_max_tokens=8)
    env = {"EBRAIN_KAFKA_BOOTSTRAP": kafka_settings.bootstrap, "EBRAIN_KAFKA__BOOTSTRAP": kafka_settings.bootstrap,
           "EBRAIN_MQTT__HOST": mqtt_settings.host, "EBRAIN_MQTT__PORT": str(mqtt_settings.port),
           "EBRAIN_STATE_DIR": str(tmp_path / "state")}
    lines: list[str] = []
    result = await live_rollout(settings, registry, "v1", teacher=tmp_path / "base.gguf",
                                prompts=["What is a pump?", "Name a tool."], env=env, state_dir=tmp_path / "state",
                                config=FleetConfig(devices=2, telemetry_interval_s=1.0, deadline_s=120.0),
                                echo=lines.append)
    assert result.verdict == "promote", result.reason
    assert len(result.canary) == 1
    assert result.decision is not None
    assert result.decision.canary.requests >= 4  # answered on v1, after the OTA swap
    assert result.decision.control.requests >= 4
    assert result.decision.canary.latency_ms is not None
    assert result.decision.control.latency_ms is not None
    assert registry.load()["current"] == "v1"
    assert registry.entry("v1")["history"][-1]["decision"]["canary"]["requests"] >= 4
    assert any("live fleet of 2 devices" in line for line in lines)
