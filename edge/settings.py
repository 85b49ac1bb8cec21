"""The edge agent's one settings class (env prefix EBRAIN_, nested with __, e.g. EBRAIN_MQTT__HOST)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ebrain.config import MqttSettings
from edge.core.policy import PolicyConfig, TenantOverride, for_tenant


class TenantPolicy(BaseModel):
    """Per-tenant overrides of the escalation thresholds; unset fields keep the fleet-wide value.

    Env: EBRAIN_TENANT_POLICIES='{"acme": {"escalation": "always"}, "plant-7": {"escalation": "never"}}'.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    escalation: Literal["auto", "always", "never"] | None = None
    min_confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    max_local_prompt_chars: int | None = Field(default=None, ge=1)
    cloud_tags: frozenset[str] | None = None
    escalate_on_truncation: bool | None = None


class EdgeSettings(BaseSettings):
    """Who this device is, which model it runs within its 2-CPU / 2-GB budget, and when it escalates."""

    model_config = SettingsConfigDict(env_prefix="EBRAIN_", env_nested_delimiter="__", frozen=True)

    tenant: str = "demo"
    device: str = "edge-1"
    model: str = Field(default="smollm2", description="Path, 'smollm2', 'gemma3-270m', 'tiny' or 'hf:repo/file'.")
    model_id: str | None = None
    model_version: str = "1"
    state_dir: Path = Path(".ebrain")
    n_threads: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, description="Default: all cores.")
    n_ctx: int = Field(default=2048, ge=128)
    n_batch: int = Field(default=256, ge=8)
    use_mmap: bool = True
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
    tenant_policies: dict[str, TenantPolicy] = Field(default_factory=dict)
    metrics_port: int = 0
    metrics_addr: str = Field(default="127.0.0.1", min_length=1)  # 0.0.0.0 in a container
    # Store and forward (edge.spool): where, how many, how long.
    spool_path: Path | None = Field(default=None, description="Default: <state_dir>/spool/<tenant>-<device>.db")
    spool_max_entries: int = Field(default=10_000, ge=2)
    spool_ttl_s: float = Field(default=7 * 24 * 3600, gt=0)
    connect_grace_s: float = Field(default=5.0, ge=0, description="At start, wait this long for the broker.")
    publish_timeout_s: float = Field(default=10.0, gt=0, description="Wait this long for a PUBACK, then spool.")
    drain_timeout_s: float = Field(default=30.0, ge=0, description="On shutdown, try this long to empty the spool.")
    # Over-the-air model updates (edge.ota).
    ota_smoke_max_latency_ms: float = Field(default=30_000.0, ge=0)
    ota_download_timeout_s: float = Field(default=60.0, gt=0)
    canary: bool = False

    def policy(self, tenant: str | None = None) -> PolicyConfig:
        """The escalation policy for `tenant` (default: this device's tenant), overrides applied."""
        base = PolicyConfig(
            max_local_prompt_chars=self.max_local_prompt_chars,
            cloud_tags=self.cloud_tags,
            min_confidence=self.min_confidence,
            escalate_on_truncation=self.escalate_on_truncation,
        )
        override = self.tenant_policies.get(tenant or self.tenant)
        return for_tenant(base, TenantOverride(**override.model_dump()) if override else None)

    def spool_file(self, device: str | None = None) -> Path:
        """A device's spool database (one per device, so simulated devices never share one)."""
        device = device or self.device
        if self.spool_path is not None and device == self.device:
            return self.spool_path
        return self.state_dir / "spool" / f"{self.tenant}-{device}.db"
