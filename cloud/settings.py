"""The cloud worker's one settings object. Env: EBRAIN_MODEL, EBRAIN_KAFKA__BOOTSTRAP, EBRAIN_N_THREADS..."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from ebrain.config import KafkaSettings


class CloudSettings(BaseSettings):
    """Built once in the composition root (`cloud.app`) and passed down; nothing below reads os.environ."""

    model_config = SettingsConfigDict(
        env_prefix="EBRAIN_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    kafka: KafkaSettings = KafkaSettings()
    group_id: str = "ebrain-cloud"
    # A new consumer group starts at the oldest message, so requests sent before the first worker came
    # up are still answered; an existing group resumes from its committed offsets either way.
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    # 1: one consumer reads both uplink topics. More: that many consumers per topic, so partitions are
    # processed in parallel (each still in order); every consumer is a group member to rebalance.
    consumers_per_topic: int = Field(default=1, ge=1, le=64)
    # How soon the group notices a consumer that died without leaving (and hands its partitions on).
    session_timeout_ms: int = Field(default=10_000, ge=1)
    heartbeat_interval_ms: int = Field(default=3_000, ge=1)

    backend: Literal["llama"] = "llama"
    # A .gguf path, 'smollm2', 'gemma3-270m', 'tiny' or 'hf:OWNER/REPO/FILE' (see ebrain.models).
    model: str = "smollm2"
    model_id: str | None = None
    model_version: str = "1"
    hf_token: SecretStr | None = None
    state_dir: Path = Path(".ebrain")
    n_threads: int = Field(default=2, ge=1)
    n_ctx: int = Field(default=2048, ge=128)
    n_batch: int = Field(default=512, ge=8)
    # Engine calls in flight at once; the engine's own queue is sized to match, so it is never exceeded.
    max_concurrency: int = Field(default=2, ge=1, le=256)

    default_deadline_ms: int = Field(default=30_000, ge=1)
    retry_base_ms: int = Field(default=50, ge=1)
    retry_cap_ms: int = Field(default=2_000, ge=1)
    dedup_size: int = Field(default=100_000, ge=1)
    metrics_port: int = Field(default=0, ge=0, le=65535)
    log_level: str = "INFO"
