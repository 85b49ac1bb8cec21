"""Connection settings shared by the services. Each service's own frozen settings class nests these."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class MqttSettings(BaseModel):
    """How to reach the MQTT broker. Env: EBRAIN_MQTT__HOST, EBRAIN_MQTT__PORT, ..."""

    model_config = ConfigDict(frozen=True)

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = False
    ca_file: str | None = None
    # Client certificate for brokers that require mutual TLS (key_file may be omitted if cert_file has the key).
    cert_file: str | None = None
    key_file: str | None = None
    keepalive_s: int = 30
    # MQTT v5 session expiry: the broker keeps our subscriptions and queued QoS 1 messages this long.
    session_expiry_s: int = 3600
    max_inflight: int = Field(default=100, ge=1, le=65535)


class KafkaSettings(BaseModel):
    """How to reach Kafka. Env: EBRAIN_KAFKA__BOOTSTRAP, ... (EBRAIN_KAFKA_BOOTSTRAP is honoured by the CLI)."""

    model_config = ConfigDict(frozen=True)

    bootstrap: str = "127.0.0.1:19092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_file: str | None = None
    # Tansu rejects InitProducerId; switch on for real Apache Kafka.
    enable_idempotence: bool = False
    linger_ms: int = 5
    max_batch_size: int = 64 * 1024
    compression: str | None = None
    partitions: int = 3
    replication_factor: int = 1
