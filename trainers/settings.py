"""The trainer's one settings object. Env: EBRAIN_TRAIN__MAX_STEPS, EBRAIN_GATE__MIN_PERPLEXITY_GAIN, ..."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ebrain.config import KafkaSettings
from trainers.core.gate import GateConfig
from trainers.core.rollout import RolloutConfig


class TrainKnobs(BaseModel):
    """LoRA and optimiser settings; defaults finish a 135M model round in minutes on 2 cores."""

    model_config = ConfigDict(frozen=True)

    max_steps: int = Field(default=60, ge=1)
    learning_rate: float = Field(default=2e-4, gt=0)
    batch_size: int = Field(default=4, ge=1)
    lora_r: int = Field(default=16, ge=1)
    lora_alpha: int = Field(default=32, ge=1)
    max_length: int = Field(default=384, ge=16)
    dpo: bool = True  # a DPO pass after SFT when there are preference pairs
    dpo_steps: int = Field(default=20, ge=1)
    # DPO moves the policy away from its reference fast: at the SFT rate (1e-3) SmolLM2 drifted 109 nats per
    # sequence in 4 steps (aborted by the divergence check).
    dpo_learning_rate: float = Field(default=5e-5, gt=0)
    dpo_beta: float = Field(default=0.1, gt=0)
    seed: int = 0


class GateSettings(BaseModel):
    """Margins (see trainers.core.gate)."""

    model_config = ConfigDict(frozen=True)

    min_perplexity_gain: float = Field(default=0.02, ge=0.0, lt=1.0)
    min_confidence_gain: float = 0.0
    max_similarity_drop: float = Field(default=0.02, ge=0.0)
    max_regression_drop: float = Field(default=0.0, ge=0.0)

    def config(self) -> GateConfig:
        return GateConfig(self.min_perplexity_gain, self.min_confidence_gain, self.max_similarity_drop,
                          self.max_regression_drop)


class RolloutSettings(BaseModel):
    """Canary size, margins and the observation window (see trainers.core.rollout)."""

    model_config = ConfigDict(frozen=True)

    canary_fraction: float = Field(default=0.25, gt=0.0, le=1.0)
    min_requests: float = Field(default=8.0, ge=0.0)
    max_escalation_increase: float = Field(default=0.05, ge=0.0)
    max_error_increase: float = Field(default=0.02, ge=0.0)
    max_latency_ratio: float = Field(default=1.5, ge=1.0)
    window_s: float = Field(default=300.0, gt=0.0)

    def config(self) -> RolloutConfig:
        return RolloutConfig(self.canary_fraction, self.min_requests, self.max_escalation_increase,
                             self.max_error_increase, self.max_latency_ratio)


class TrainerSettings(BaseSettings):
    """Built once in the composition root (`trainers.app`) and passed down."""

    model_config = SettingsConfigDict(env_prefix="EBRAIN_", env_nested_delimiter="__", frozen=True, extra="ignore")

    kafka: KafkaSettings = KafkaSettings()
    data_dir: Path = Path(".ebrain/dataset")
    registry_dir: Path = Path(".ebrain/registry")
    # The base when the registry has no current version: a GGUF path or a model spec ('smollm2', 'tiny').
    model: str = "smollm2"
    model_id: str = "edge"
    # Q8_0, not the base's Q4_1: the base is loaded dequantized from its 4-bit grid, and re-quantizing the merged
    # model to that grid rounds most LoRA deltas (smaller than a 4-bit step) back to the base's values. Measured
    # on the flywheel: the same trained round escalated 18 of 20 held-out prompts as Q4_1, 0 of 20 as Q8_0 or F16.
    quantization: Literal["f32", "f16", "q8_0", "q4_0", "q4_1", "q5_1", "q4_k_m"] = "q8_0"
    convert_outtype: Literal["f32", "f16", "bf16"] = "f16"
    heldout_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    min_records: int = Field(default=8, ge=2)
    eval_max_tokens: int = Field(default=48, ge=1)
    min_confidence: float = Field(default=0.35, ge=0.0, le=1.0)  # the edge policy's threshold
    threads: int = Field(default=2, ge=1)  # torch
    # llama.cpp during evaluation. One thread: on the shared 2-core build machines OpenMP's spin-waiting under
    # oversubscription made two threads 3.5x slower than one (measured: 25.5 s vs 7.3 s for 3 answers).
    eval_threads: int = Field(default=1, ge=1)
    train: TrainKnobs = TrainKnobs()
    gate: GateSettings = GateSettings()
    rollout: RolloutSettings = RolloutSettings()
    log_level: str = "INFO"
    # Prometheus /metrics of `train periodic` and `train rollout` (0: not served); 0.0.0.0 in a container.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_addr: str = Field(default="127.0.0.1", min_length=1)
    # Periodic mode: a round every `interval_s`, or as soon as `every_records` new records arrived.
    interval_s: float = Field(default=3600.0, gt=0.0)
    every_records: int = Field(default=0, ge=0)

    tools_dir: Path = Path(".ebrain/tools")  # llama.cpp's converter is fetched here once
    models_dir: Path = Path(".ebrain/models")  # where model specs ('smollm2', 'tiny') resolve
