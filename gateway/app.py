"""Composition root: one MQTT client, one Kafka producer, one consumer, and the two bridges over them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from ebrain.lifecycle import Lifecycle
from ebrain.mqtt import MqttClient
from gateway import kafka_io
from gateway.core.provision import parse_inventory, tenants
from gateway.downlink import Downlink, DownlinkStats, downlink_topics
from gateway.settings import GatewaySettings
from gateway.uplink import Uplink, UplinkStats
from schemas.topics import mqtt_uplink_filter

log = logging.getLogger(__name__)
# Flushing the producer on stop waits for Kafka; do not let a dead Kafka hold shutdown hostage.
STOP_TIMEOUT_S = 10.0


class Gateway(Lifecycle):
    """`async with Gateway(settings) as gw:` bridges MQTT and Kafka until the block exits.

    Entering connects to MQTT and subscribes (so messages queue for us from then on); Kafka is awaited in
    the background with backoff, and `ready` is set once both directions run. Unacked uplink messages wait
    at the broker meanwhile: nothing is acked before Kafka has it.
    """

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = with_tenant_registry(settings)
        self.ready = asyncio.Event()
        self.uplink_stats = UplinkStats()
        self.downlink_stats = DownlinkStats()
        self._mqtt: MqttClient | None = None
        self._task: asyncio.Task[None] | None = None


    async def start(self) -> None:
        """Connect and subscribe to MQTT (raises MqttConnectError), then bring up Kafka in the background."""
        if self._task is not None:
            return
        s = self.settings
        self._mqtt = MqttClient(s.mqtt, client_id=s.client_id, manual_ack=True, max_queued_incoming=s.max_inflight)
        await self._mqtt.start()
        suback: asyncio.Future[None] | None = None
        uplink_filter = mqtt_uplink_filter(s.share_group)
        try:
            if self._mqtt.session_present:
                # The broker kept our session (a plain subscription survives a broker restart with persistence;
                # Mosquitto drops shared ones, so subscribe again anyway), and its backlog may arrive ahead of
                # the SUBACK: that is read only once the uplink drains the backlog (after Kafka is up), so
                # confirm it there.
                suback = self._mqtt.start_subscribe(uplink_filter, qos=1)
            else:
                await self._mqtt.subscribe(uplink_filter, qos=1)
        except BaseException:
            await self._mqtt.stop()
            raise
        self._task = asyncio.create_task(self._run(self._mqtt, suback), name="gateway")
        log.info("gateway started", extra={"client_id": s.client_id, "uplink_filter": uplink_filter,
                                           "session_present": self._mqtt.session_present})

    async def stop(self) -> None:
        """Cancel and await both bridges, close Kafka clients, then disconnect MQTT. Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("gateway failed")
        mqtt, self._mqtt = self._mqtt, None
        if mqtt is not None:
            await mqtt.stop()
        self.ready.clear()
        if task is not None:
            log.info("gateway stopped", extra={"uplink": vars(self.uplink_stats)})

    @property
    def mqtt_backlog(self) -> int:
        """Uplink messages the MQTT client holds that the bridge has not taken yet (none of them acked)."""
        return self._mqtt.queued_incoming if self._mqtt is not None else 0

    async def wait(self) -> None:
        """Return (or raise) when the bridges end on their own, which means the gateway failed."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _run(self, mqtt: MqttClient, suback: asyncio.Future[None] | None) -> None:
        s = self.settings
        await kafka_io.ensure_all_topics(s)
        producer = await kafka_io.start_producer(s)
        try:
            consumer = await kafka_io.start_consumer(s, downlink_topics())
            try:
                self.ready.set()
                log.info("gateway ready", extra={"kafka": s.kafka.bootstrap})
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(Uplink(s, mqtt, producer, self.uplink_stats).run(), name="uplink")
                    tg.create_task(Downlink(s, mqtt, consumer, producer, self.downlink_stats).run(), name="downlink")
                    if suback is not None:
                        await suback  # a refused subscription (e.g. ACL) fails the gateway
            finally:
                await _close(consumer.stop())
        finally:
            await _close(producer.stop())  # flushes what is still batched


def with_tenant_registry(settings: GatewaySettings) -> GatewaySettings:
    """`settings` with `tenants` read from the provisioning inventory when only `inventory_file` is set."""
    if settings.tenants is not None or settings.inventory_file is None:
        return settings
    registry = tenants(parse_inventory(settings.inventory_file.read_text()))
    return settings.model_copy(update={"tenants": registry})


async def _close(stopping: Coroutine[Any, Any, None]) -> None:
    try:
        await asyncio.wait_for(stopping, STOP_TIMEOUT_S)
    except Exception:
        log.exception("error while closing a kafka client")
