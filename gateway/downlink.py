"""Downlink: Kafka `ebrain.down.<kind>` -> the device's MQTT topic, committing only after PUBACK.

Records are handled partition by partition; within a partition MQTT publishes are issued in offset
order and the offset is committed once every publish of the batch was acknowledged (QoS 1).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from ebrain.mqtt import MqttClient, MqttError
from ebrain.observability import trace
from gateway import kafka_io, metrics
from gateway.core import Backoff, MqttOut, dead_letter_record, downlink_message
from gateway.settings import GatewaySettings
from schemas import InvalidMessage
from schemas.topics import DOWNLINK_KINDS, kafka_downlink

log = logging.getLogger(__name__)


def downlink_topics() -> list[str]:
    """The Kafka topics the gateway fans out to devices."""
    return [kafka_downlink(k) for k in sorted(DOWNLINK_KINDS)]


@dataclass
class DownlinkStats:
    """Counts for this process."""

    published: int = 0
    deadlettered: int = 0
    committed: int = 0


class Downlink:
    """Runs until cancelled; the Gateway owns the consumer, producer and MQTT client."""

    def __init__(
        self,
        settings: GatewaySettings,
        mqtt: MqttClient,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        stats: DownlinkStats,
    ) -> None:
        self._settings = settings
        self._mqtt = mqtt
        self._consumer = consumer
        self._producer = producer
        self.stats = stats
        self._backoff = Backoff(max_s=settings.retry_max_s)

    async def run(self) -> None:
        """Consume, publish and commit until cancelled."""
        while True:
            batches = await self._consumer.getmany(timeout_ms=1000, max_records=self._settings.max_inflight)
            for tp, records in batches.items():
                if records:
                    await self._deliver(tp, records)

    async def _deliver(self, tp: TopicPartition, records: list[Any]) -> None:
        outs = [out for r in records if (out := await self._convert(r)) is not None]
        attempt = 0
        while True:
            try:
                await self._publish_in_order(outs)
                break
            except MqttError as exc:
                # Publishing again may duplicate some messages: devices dedup by envelope id.
                delay = self._backoff.delay(attempt)
                metrics.RETRIES.labels(op="mqtt_publish").inc()
                log.warning("downlink publish failed, retrying", extra={"error": repr(exc), "retry_in_s": delay})
                attempt += 1
                await asyncio.sleep(delay)
        await self._commit(tp, records[-1].offset + 1)

    async def _convert(self, record: Any) -> MqttOut | None:
        try:
            return downlink_message(record.topic, record.value, max_bytes=self._settings.max_message_bytes,
                                    traceparent_in=trace.from_headers(record.headers))
        except InvalidMessage as exc:
            await self._dead_letter(record, exc)
            return None

    async def _dead_letter(self, record: Any, error: InvalidMessage) -> None:
        tenant, _, device = (record.key or b"").decode(errors="replace").partition("/")
        dead = dead_letter_record(record.topic, record.value or b"", error, tenant=tenant, device=device)
        await kafka_io.produce(self._producer, dead, self._settings)
        metrics.DEADLETTERS.labels(reason=error.reason.value).inc()
        metrics.DOWNLINK_MESSAGES.labels(kind=record.topic.rsplit(".", 1)[-1], outcome="deadlettered").inc()
        self.stats.deadlettered += 1
        log.warning(
            "downlink record dead-lettered",
            extra={
                "reason": error.reason.value,
                "detail": error.detail[:300],
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
            },
        )

    async def _publish_in_order(self, outs: list[MqttOut]) -> None:
        # Tasks start in creation order, so paho queues the publishes in offset order; PUBACKs are
        # awaited together so one slow ack does not serialise the whole batch.
        tasks = [asyncio.ensure_future(self._mqtt.publish(o.topic, o.payload, qos=1, user_properties=o.user_properties))
                 for o in outs]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        for out in outs:
            env = out.envelope
            metrics.DOWNLINK_MESSAGES.labels(kind=env.data.KIND, outcome="published").inc()
            metrics.BYTES.labels(direction="downlink").inc(len(out.payload))
            if log.isEnabledFor(logging.DEBUG):
                log.debug("downlink published", extra={
                    "msg_id": env.id, "tenant": env.tenant, "device": env.device, "trace_id": env.trace_id,
                    **trace.log_fields(out.traceparent or "", out.traceparent_in)})
        self.stats.published += len(outs)

    async def _commit(self, tp: TopicPartition, offset: int) -> None:
        try:
            await self._consumer.commit({tp: offset})
            self.stats.committed += 1
        except KafkaError as exc:
            # Lost the partition in a rebalance (or Kafka blipped): its next owner redelivers; devices dedup.
            log.warning("downlink commit failed", extra={"error": repr(exc), "partition": tp.partition})
