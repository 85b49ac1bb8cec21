"""The device's MQTT link: an `MqttClient` that may start while the broker is unreachable.

`ebrain.mqtt.MqttClient.start()` raises MqttConnectError when the first CONNACK does not come (paho then
reconnects by itself only after a first success). A device must boot and keep answering (spooling) with the
network down, so this wrapper retries the first connect in the background with capped exponential backoff
and offers the subset of the client's API the agent uses (`subscribe`, `publish`, `messages`, `connected`).
Subscriptions made before the broker is reached are applied once it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence

from ebrain.config import MqttSettings
from ebrain.lifecycle import Lifecycle
from ebrain.mqtt import MqttClient, MqttConnectError, MqttError, MqttMessage, MqttNotConnectedError

log = logging.getLogger(__name__)

RETRY_MIN_S = 0.25
RETRY_MAX_S = 15.0


class MqttLink(Lifecycle):
    """Owns one MqttClient (created once the broker answers) and the task that keeps trying to reach it."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        client_id: str,
        connect_timeout_s: float = 5.0,
        factory: Callable[..., MqttClient] = MqttClient,
    ) -> None:
        self._settings, self._client_id = settings, client_id
        self._connect_timeout_s = connect_timeout_s
        self._factory = factory
        self._client: MqttClient | None = None
        self._up = asyncio.Event()
        self._subscriptions: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self.attempts = 0

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._connect(), name=f"mqtt-link-{self._client_id}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        client, self._client = self._client, None
        self._up.clear()
        if client is not None:
            await client.stop()

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    async def wait_connected(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 - mirrors MqttClient
        """Wait until the broker is reachable (again); TimeoutError after `timeout` seconds."""
        async with asyncio.timeout(timeout):
            await self._up.wait()
            assert self._client is not None
            await self._client.wait_connected()

    async def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        """Subscribe now if connected, else as soon as the broker is reached (and after every reconnect)."""
        self._subscriptions[topic_filter] = qos
        if self._client is not None:
            with contextlib.suppress(MqttNotConnectedError):  # the client renews it on reconnect
                await self._client.subscribe(topic_filter, qos)

    async def publish(
        self, topic: str, payload: bytes, qos: int = 1, *, user_properties: Sequence[tuple[str, str]] = ()
    ) -> None:
        """Publish and wait for the PUBACK; MqttNotConnectedError while the broker was never reached."""
        if self._client is None:
            raise MqttNotConnectedError("broker not reached yet")
        await self._client.publish(topic, payload, qos, user_properties=user_properties)

    async def messages(self) -> AsyncIterator[MqttMessage]:
        """Incoming messages once connected; ends when the link stops."""
        await self._up.wait()
        assert self._client is not None
        async for message in self._client.messages():
            yield message

    async def _connect(self) -> None:
        delay = RETRY_MIN_S
        while True:
            self.attempts += 1
            client = self._factory(self._settings, client_id=self._client_id,
                                   connect_timeout_s=self._connect_timeout_s)
            try:
                await client.start()
            except MqttConnectError as exc:
                if self.attempts == 1 or self.attempts % 20 == 0:
                    log.warning("mqtt broker unreachable, retrying", extra={"client_id": self._client_id,
                                                                           "error": str(exc), "attempt": self.attempts})
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            self._client = client
            for topic_filter, qos in list(self._subscriptions.items()):
                with contextlib.suppress(MqttError):
                    await client.subscribe(topic_filter, qos)
            self._up.set()
            return
