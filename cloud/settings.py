"""The cloud worker's one settings object. Env: EBRAIN_MODEL, EBRAIN_KAFKA__BOOTSTRAP, EBRAIN_N_THREADS..."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from ebrain.config import KafkaSettings


class BackendSettings(BaseModel):
    """One OpenAI-compatible server. In EBRAIN_BACKENDS as a JSON list, primary first."""

    model_config = ConfigDict(frozen=True)

    name: str
    url: str  # without /v1, e.g. http://vllm:8000
    model: str  # the served model name
    tier: Literal["gpu", "cpu"] = "gpu"
    model_version: str = "1"
    # Per attempt; a hung backend costs at most this before the router moves on.
    timeout_s: float = Field(default=30.0, gt=0)
    # In flight at once (enough to keep vLLM's continuous batching fed) and waiting beyond that.
    max_concurrency: int = Field(default=8, ge=1, le=1024)
    max_queue: int = Field(default=16, ge=0, le=4096)
    logprobs: bool = False
    api_key: SecretStr | None = None
    # Merged into every request body: server-specific sampling options (vLLM: top_k, min_p, ...). Serving
    # options (speculative decoding, prefix caching, max-num-seqs) are server flags: see README, Cloud.
    extra_body: dict[str, Any] = Field(default_factory=dict)


class CacheSettings(BaseModel):
    """The response cache (needs redis_url). Semantic lookups need Redis 8 vector sets."""

    model_config = ConfigDict(frozen=True)

    enabled: bool = True
    semantic: bool = True
    ttl_s: int = Field(default=3600, ge=1)
    # VSIM similarity, (1 + cosine) / 2; tuned on tests/data/cache_pairs.jsonl (see tests/test_cache_quality.py).
    threshold: float = Field(default=0.93, gt=0.5, le=1.0)


class RateLimitSettings(BaseModel):
    """Per-minute token buckets (0: no limit). `on_redis_error`: open = allow, closed = reject."""

    model_config = ConfigDict(frozen=True)

    enabled: bool = True
    tenant_requests: int = Field(default=600, ge=0)
    tenant_tokens: int = Field(default=200_000, ge=0)
    device_requests: int = Field(default=60, ge=0)
    device_tokens: int = Field(default=20_000, ge=0)
    on_redis_error: Literal["open", "closed"] = "open"


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

    # llama: an in-process llama.cpp engine (the default, no servers needed). router: the OpenAI-compatible
    # servers in `backends` (vLLM first, llama.cpp server as CPU replica) behind the router, cache and limits.
    backend: Literal["llama", "router"] = "llama"
    backends: tuple[BackendSettings, ...] = ()
    redis_url: str | None = None
    cache: CacheSettings = CacheSettings()
    ratelimit: RateLimitSettings = RateLimitSettings()
    breaker_threshold: int = Field(default=3, ge=1)
    breaker_cooldown_ms: int = Field(default=5_000, ge=1)
    max_kv_cache_usage: float = Field(default=0.95, gt=0, le=1)
    max_waiting: int = Field(default=8, ge=0)
    # After a 429/503 the backend is skipped this long (the next request goes straight to the replica).
    overload_hold_ms: int = Field(default=1_000, ge=0)
    # In-process backoff rounds when every backend refused, before deferring to the retry topic.
    max_rounds: int = Field(default=2, ge=0)
    retry_delay_ms: int = Field(default=2_000, ge=1)
    max_retry_attempts: int = Field(default=10, ge=1)
    reply_ttl_s: int = Field(default=86_400, ge=1)
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
    metrics_addr: str = Field(default="127.0.0.1", min_length=1)  # 0.0.0.0 in a container
    log_level: str = "INFO"
