"""aiokafka plumbing shared by the gateway and workers: client options from settings, topic creation."""

from __future__ import annotations

import logging
import ssl
from typing import Any

from ebrain.config import KafkaSettings

log = logging.getLogger(__name__)


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """Connection and security options accepted by every aiokafka client."""
    opts: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in {"SSL", "SASL_SSL"}:
        opts["ssl_context"] = ssl.create_default_context(cafile=settings.ssl_ca_file)
    if settings.sasl_mechanism:
        opts["sasl_mechanism"] = settings.sasl_mechanism
        opts["sasl_plain_username"] = settings.sasl_username
        if settings.sasl_password is not None:
            opts["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return opts


def producer_options(settings: KafkaSettings) -> dict[str, Any]:
    """Producer options: acks=all always; batching and idempotence from settings."""
    return {
        **client_options(settings),
        "acks": "all",
        "enable_idempotence": settings.enable_idempotence,
        "linger_ms": settings.linger_ms,
        "max_batch_size": settings.max_batch_size,
        "compression_type": settings.compression,
    }


async def ensure_topics(settings: KafkaSettings, topics: list[str]) -> None:
    """Create the topics that do not exist yet (idempotent; safe to race with other replicas)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: PLC0415 - keep edge installs free of aiokafka
    from aiokafka.errors import TopicAlreadyExistsError  # noqa: PLC0415

    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if not missing:
            return
        new = [NewTopic(t, settings.partitions, settings.replication_factor) for t in missing]
        try:
            await admin.create_topics(new)
        except TopicAlreadyExistsError:
            log.debug("topics created concurrently by another process")
        log.info("kafka topics created", extra={"topics": missing})
    finally:
        await admin.close()
