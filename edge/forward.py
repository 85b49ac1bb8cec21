"""Store and forward: the `Uplink` the agent uses in production, a spool in front of the MQTT link.

`send` publishes directly (QoS 1, waits for the PUBACK) while the link is up and the spool is empty. When the
link is down, the publish fails retryably or no PUBACK comes within `publish_timeout_s`, or older messages
still wait in the spool (a new message must not overtake them), the message goes to the spool instead, and
`send` returns once it is durably there (see edge.spool for the fsync policy). A drainer task sends spooled
messages in spool order when the link is up, deleting each only after its PUBACK.

A publish that timed out may still reach the broker later (paho keeps it queued), and a message whose PUBACK
arrived just before a kill -9 is sent again after the restart: delivery is at least once, and every consumer
deduplicates by envelope id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from ebrain.lifecycle import Lifecycle
from ebrain.mqtt import MqttError, MqttPublishError
from ebrain.observability import trace
from edge.spool import BULK, CRITICAL, Spool
from schemas import Envelope, Telemetry, encode
from schemas.topics import mqtt_uplink

log = logging.getLogger(__name__)
_T = TypeVar("_T")

RETRY_S = 1.0  # pause after a failed drain publish before trying again (the link is flapping)
BATCH = 32


class Link(Protocol):
    """What the forwarder needs of the MQTT side (edge.link.MqttLink, or a MqttClient)."""

    @property
    def connected(self) -> bool: ...

    async def wait_connected(self, timeout: float | None = None) -> None: ...  # noqa: ASYNC109

    async def publish(
        self, topic: str, payload: bytes, qos: int = 1, *, user_properties: Sequence[tuple[str, str]] = ()
    ) -> None: ...


def _properties_of(payload: bytes) -> tuple[tuple[str, str], ...]:
    """A spooled message's traceparent: a new first span of the trace its bytes name (the spool keeps no headers)."""
    trace_id = trace.trace_id_in(payload)
    return trace.properties(trace_id) if trace_id else ()


def priority_of(envelope: Envelope[Any]) -> int:
    """Telemetry may be evicted under pressure; everything else must arrive."""
    return BULK if isinstance(envelope.data, Telemetry) else CRITICAL


class StoreAndForward(Lifecycle):
    """The spooling uplink. Raises edge.spool.SpoolFullError from `send` when a must-arrive message does not fit."""

    def __init__(self, link: Link, spool: Spool, *, publish_timeout_s: float = 10.0) -> None:
        self._link, self._spool = link, spool
        self._publish_timeout_s = publish_timeout_s
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-spool")  # fsync off the event loop
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.counters: dict[str, int] = {"direct": 0, "spooled": 0, "drained": 0, "publish_failures": 0,
                                         "refused_by_broker": 0}

    @property
    def depth(self) -> int:
        return len(self._spool)

    @property
    def spool(self) -> Spool:
        return self._spool

    async def start(self) -> None:
        if self._task is None:
            self._wake.set()  # a spool left by an earlier run drains as soon as the link is up
            self._task = asyncio.create_task(self._drain(), name="edge-spool-drainer")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await self._call(self._spool.close)
        self._io.shutdown(wait=True)

    async def send(self, envelope: Envelope[Any]) -> None:
        """Deliver to the broker (PUBACK) or to the durable spool; see the module docstring."""
        topic = mqtt_uplink(envelope.tenant, envelope.device, envelope.data.KIND)
        raw = encode(envelope)
        if self._link.connected and not len(self._spool):
            try:
                await self._publish(topic, raw, trace.properties(envelope.trace_id))
            except MqttPublishError as exc:
                self._refused(envelope.id, exc)
                return
            except (MqttError, TimeoutError) as exc:
                self.counters["publish_failures"] += 1
                log.warning("publish failed, spooling", extra={"msg_id": envelope.id, "error": repr(exc)})
            else:
                self.counters["direct"] += 1
                return
        await self._call(self._spool.put, topic, raw, envelope.id, priority_of(envelope))
        self.counters["spooled"] += 1
        self._wake.set()

    async def flush(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the spool to empty (e.g. before a clean shutdown); True if it did."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while len(self._spool):
                    self._drained.clear()
                    self._wake.set()
                    await self._drained.wait()
        return not len(self._spool)

    async def _drain(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._link.wait_connected()
            while entries := await self._call(self._spool.head, BATCH):
                if not await self._send_batch(entries):
                    await asyncio.sleep(RETRY_S)
                    self._wake.set()
                    break
            self._drained.set()

    async def _send_batch(self, entries: list[Any]) -> bool:
        """Publish in order, deleting each after its PUBACK; False at the first failure (retried later)."""
        for entry in entries:
            try:
                await self._publish(entry.topic, entry.payload, _properties_of(entry.payload))
            except MqttPublishError as exc:
                self._refused(entry.msg_id, exc)  # retrying cannot help, and would block everything behind it
            except (MqttError, TimeoutError) as exc:
                self.counters["publish_failures"] += 1
                log.info("drain paused", extra={"msg_id": entry.msg_id, "error": repr(exc), "depth": self.depth})
                return False
            else:
                self.counters["drained"] += 1
            await self._call(self._spool.remove, entry.seq)
        return True

    async def _publish(self, topic: str, payload: bytes, properties: Sequence[tuple[str, str]]) -> None:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that arrives as the
        # PUBACK does (cpython gh-86296), and the owner's stop() then waits forever for a task that never ends.
        async with asyncio.timeout(self._publish_timeout_s):
            await self._link.publish(topic, payload, 1, user_properties=properties)

    def _refused(self, msg_id: str, exc: Exception) -> None:
        """The broker answered with a failure reason code (e.g. not authorised): counted, logged, not retried."""
        self.counters["refused_by_broker"] += 1
        log.error("broker refused a message; dropped", extra={"msg_id": msg_id, "error": str(exc)})

    async def _call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)
