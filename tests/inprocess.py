"""The one-process path (gateway, cloud worker, an edge engine on the tiny model) that end-to-end tests share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cloud.settings import CloudSettings
from ebrain.config import KafkaSettings, MqttSettings
from ebrain.inference.llama import LlamaCppEngine
from ebrain.models.tiny import write_tiny_llama
from edge.core.policy import PolicyConfig
from gateway.settings import GatewaySettings


@dataclass(frozen=True)
class InProcess:
    """Settings of one test's gateway and cloud worker (unique ids), the edge policy, and a loaded edge engine."""

    model: Path
    mqtt: MqttSettings
    gateway: GatewaySettings
    cloud: CloudSettings
    policy: PolicyConfig
    engine: LlamaCppEngine


async def in_process(mqtt_settings: MqttSettings, kafka_settings: KafkaSettings, tmp_path: Path,
                     uid: str) -> InProcess:
    """Everything but the running services: the caller enters the gateway, the worker and the engine."""
    model = write_tiny_llama(tmp_path / "tiny.gguf")
    mqtt = mqtt_settings.model_copy(update={"session_expiry_s": 0})
    gateway = GatewaySettings(mqtt=mqtt, kafka=kafka_settings, client_id=f"gw-{uid}",
                              share_group=f"gw-{uid}", downlink_group=f"gw-down-{uid}")
    cloud = CloudSettings(kafka=kafka_settings, model=str(model), state_dir=tmp_path, n_threads=1,
                          group_id=f"cloud-{uid}", session_timeout_ms=2_000, heartbeat_interval_ms=500)
    policy = PolicyConfig(min_confidence=0.0, escalate_on_truncation=False, refusal_patterns=())
    engine = await LlamaCppEngine.load(model, model_id="tiny-edge", model_version="e1", n_threads=1)
    return InProcess(model, mqtt, gateway, cloud, policy, engine)
