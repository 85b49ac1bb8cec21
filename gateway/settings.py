"""The gateway's settings: built once in the composition root (env prefix EBRAIN_, nested with `__`)."""

from __future__ import annotations

import socket
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ebrain.config import KafkaSettings, MqttSettings
from schemas import MAX_MESSAGE_BYTES


def _default_client_id() -> str:
    # Stable across restarts on one host (or pod), so a restarted replica resumes its MQTT session.
    return f"ebrain-gateway-{socket.gethostname()}"[:64]


class GatewaySettings(BaseSettings):
    """Env: EBRAIN_MQTT__HOST, EBRAIN_KAFKA__BOOTSTRAP, EBRAIN_MAX_INFLIGHT, EBRAIN_SHARE_GROUP, ..."""

    model_config = SettingsConfigDict(env_prefix="EBRAIN_", env_nested_delimiter="__", frozen=True, extra="ignore")

    mqtt: MqttSettings = MqttSettings()
    kafka: KafkaSettings = KafkaSettings()
    client_id: str = Field(default_factory=_default_client_id, min_length=1, max_length=64)
    # How the gateway subscribes to the uplink. None (default; "" in the environment): a plain subscription in
    # its persistent session, which the broker restores and queues for across a broker restart; right for ONE
    # replica (each plain subscriber gets every message). A group name: an MQTT v5 shared subscription
    # ($share/<group>/...), so several replicas split the uplink; Mosquitto 2.0 does not restore shared
    # subscriptions after its own restart, so uplinks published before the gateway resubscribes are dropped
    # (see README, Reliability).
    share_group: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]+$")
    downlink_group: str = "ebrain-gateway-down"
    # Uplink messages between MQTT receipt and Kafka ack; also the MQTT Receive Maximum.
    max_inflight: int = Field(default=1000, ge=1, le=65535)
    max_message_bytes: int = Field(default=MAX_MESSAGE_BYTES, ge=1024)
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_addr: str = Field(default="127.0.0.1", min_length=1)  # 0.0.0.0 in a container
    # How long one Kafka request may take before the gateway backs off and retries it.
    kafka_request_timeout_ms: int = Field(default=30_000, ge=100)
    retry_max_s: float = Field(default=10.0, gt=0)
    # Tenant registry: when set (or derived from `inventory_file`, the provisioning CSV), uplinks of any other
    # tenant are dead-lettered as unknown_tenant. None accepts every tenant.
    tenants: frozenset[str] | None = None
    inventory_file: Path | None = None
    # Token buckets (0 = unlimited). Over the limit a request or escalation gets a `rejected` InferenceResult
    # on the device's downlink; other kinds are dropped and counted (ebrain_gateway_rate_limited_total).
    device_rate_per_s: float = Field(default=0.0, ge=0)
    device_burst: float = Field(default=20.0, ge=1)
    tenant_rate_per_s: float = Field(default=0.0, ge=0)
    tenant_burst: float = Field(default=200.0, ge=1)
    rate_limited_kinds: frozenset[str] = frozenset({"request", "escalation", "telemetry"})
    # Reject replies waiting for their MQTT publish; beyond this they are dropped and counted.
    max_pending_replies: int = Field(default=1000, ge=1)

    @field_validator("share_group", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        # EBRAIN_SHARE_GROUP="" turns a shared subscription off where the variable cannot simply be unset.
        return None if isinstance(value, str) and not value.strip() else value
