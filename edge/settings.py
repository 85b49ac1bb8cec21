"""The edge agent's one settings class (env prefix EBRAIN_, nested with __, e.g. EBRAIN_MQTT__HOST)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ebrain.config import MqttSettings
from edge.core.policy import PolicyConfig


class EdgeSettings(BaseSettings):
    """Who this device is, which model it runs within its 2-CPU / 2-GB budget, and when it escalates."""

    model_config = SettingsConfigDict(env_prefix="EBRAIN_", env_nested_delimiter="__", frozen=True)

    tenant: str = "demo"
    device: str = "edge-1"
    model: str = Field(default="smollm2", description="Path, 'smollm2', 'gemma3-270m', 'tiny' or 'hf:repo/file'.")
    model_id: str | None = None
    model_version: str = "1"
    state_dir: Path = Path(".ebrain")
    n_threads: int = Field(default=2, ge=1)
    n_ctx: int = Field(default=2048, ge=128)
    n_batch: int = Field(default=256, ge=8)
    max_queue: int = Field(default=8, ge=1, description="Requests waiting for the model; beyond: reject.")
    max_pending_escalations: int = Field(default=64, ge=1)
    reply_timeout_s: float = Field(default=120.0, gt=0)
    telemetry_interval_s: float = Field(default=30.0, gt=0)
    # Small instruct models ramble without one (SmolLM2's built-in default answers in French).
    system_prompt: str = "You are a helpful assistant. Answer briefly and accurately."
    mqtt: MqttSettings = MqttSettings()
    # Escalation policy thresholds (see edge.core.policy).
    max_local_prompt_chars: int = 2000
    cloud_tags: frozenset[str] = frozenset({"cloud", "complex", "long-form"})
    min_confidence: float = Field(default=0.35, ge=0.0, le=1.0)
    escalate_on_truncation: bool = True
    metrics_port: int = 0

    def policy(self) -> PolicyConfig:
        return PolicyConfig(
            max_local_prompt_chars=self.max_local_prompt_chars,
            cloud_tags=self.cloud_tags,
            min_confidence=self.min_confidence,
            escalate_on_truncation=self.escalate_on_truncation,
        )
