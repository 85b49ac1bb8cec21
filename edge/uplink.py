"""The uplink port and its plain MQTT adapter; edge.forward.StoreAndForward (the spool) implements the same port."""

from __future__ import annotations

from typing import Any, Protocol

from ebrain.mqtt import MqttClient
from ebrain.observability import trace
from schemas import Envelope, encode
from schemas.topics import mqtt_uplink


class Uplink(Protocol):
    """Sends one envelope towards the cloud; returns once the next hop (QoS 1 PUBACK) or a durable spool has it.

    A spooling uplink raises edge.spool.SpoolFullError when a must-arrive message does not fit.
    """

    async def send(self, envelope: Envelope[Any]) -> None: ...


class MqttUplink:
    """Publishes to `ebrain/{tenant}/{device}/{kind}` with QoS 1 and waits for the broker's PUBACK.

    Each publish carries a W3C `traceparent` user property: the first span of the envelope's trace.
    """

    def __init__(self, client: MqttClient) -> None:
        self._client = client

    async def send(self, envelope: Envelope[Any]) -> None:
        topic = mqtt_uplink(envelope.tenant, envelope.device, envelope.data.KIND)
        await self._client.publish(topic, encode(envelope), qos=1, user_properties=trace.properties(envelope.trace_id))
