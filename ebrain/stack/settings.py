"""Settings of `ebrain stack`, read once from the environment by the CLI (or built by the caller)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StackSettings(BaseSettings):
    """Env: EBRAIN_STATE_DIR, EBRAIN_KAFKA_BOOTSTRAP, EBRAIN_REDIS_URL, EBRAIN_STACK_{MQTT,KAFKA,REDIS}_PORT,
    EBRAIN_STACK_READY_TIMEOUT_S, EBRAIN_STACK_MQTT_AUTH_DIR."""

    model_config = SettingsConfigDict(env_prefix="EBRAIN_STACK_", frozen=True, populate_by_name=True)

    state_dir: Path = Field(default=Path(".ebrain"), validation_alias="EBRAIN_STATE_DIR")
    # An already running Kafka ("host:port[,host:port]"): checked and used instead of starting Tansu.
    kafka_bootstrap: str | None = Field(default=None, validation_alias="EBRAIN_KAFKA_BOOTSTRAP")
    # An already running Redis ("redis://[:password@]host:port/db"): pinged and used instead of our Redis 8.
    redis_url: str | None = Field(default=None, validation_alias="EBRAIN_REDIS_URL")
    host: str = "127.0.0.1"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    kafka_port: int = Field(default=19092, ge=1, le=65535)
    redis_port: int = Field(default=6390, ge=1, le=65535)
    # Files from `ebrain gateway provision`: the Mosquitto we start then requires passwords and applies ACLs.
    # (An MQTT broker that already listens is used as is: configure it with the same files yourself.)
    mqtt_auth_dir: Path | None = None
    ready_timeout_s: float = Field(default=20.0, gt=0)
    stop_timeout_s: float = Field(default=10.0, gt=0)
