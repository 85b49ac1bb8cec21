"""The uplink port and its MQTT adapter. A later store-and-forward spool sits behind the same port."""

from __future__ import annotations

from typing import Any, Protocol

from ebrain.mqtt import MqttClient
from schemas import Envelope, encode
from schemas.topics import mqtt_uplink


class Uplink(Protocol):
    """Sends one envelope towards the cloud; returns once the next hop has it (QoS 1 PUBACK)."""

    async def send(self, envelope: Envelope[Any]) -> None: ...


class MqttUplink:
    """Publishes to `ebrain/{tenant}/{device}/{kind}` with QoS 1 and waits for the broker's PUBACK."""

    def __init__(self, client: MqttClient) -> None:
        self._client = client

    async def send(self, envelope: Envelope[Any]) -> None:
        topic = mqtt_uplink(envelope.tenant, envelope.device, envelope.data.KIND)
        await self._client.publish(topic, encode(envelope), qos=1)
