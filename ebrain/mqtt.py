"""A small asyncio MQTT v5 client over paho-mqtt 2.x, shared by the gateway and the edge agent.

paho is driven by the event loop itself (ebrain.mqtt_io.PahoDriver: its socket registered with the loop, no
network thread), so every callback below runs on the loop and all client state is touched from it alone.

Backpressure: incoming QoS 1/2 messages are acknowledged by us, never by paho on arrival (manual ack
inside paho). With `manual_ack=True` the caller acks after processing; otherwise a message is acked when
`messages()` hands it over. MQTT v5 Receive Maximum = `max_queued_incoming` asks the broker to keep no
more unacknowledged messages in flight to us than the bounded queue holds. Mosquitto 2.0.11 overshoots
it under load (measured: RM 100, 3000 messages, acks in batches -> 230 extra), so the queue is the real
bound: when it is full the socket is not read until it drains to half, and TCP pushes back on the
broker. Nothing is dropped and memory stays bounded.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import struct
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from prometheus_client import Counter

from ebrain.config import MqttSettings
from ebrain.lifecycle import Lifecycle
from ebrain.mqtt_io import PahoDriver, ReadAheadClient
from ebrain.mqtt_wire import Publish

log = logging.getLogger(__name__)

PUBLISH_REJECTED = Counter(
    "ebrain_mqtt_publish_rejected_total",
    "Publishes refused locally (outgoing queue full, no connection)",
    ["reason"],
)
INCOMING_WAITS = Counter(
    "ebrain_mqtt_incoming_full_waits_total",
    "Times reading paused because the incoming queue was full (the consumer is behind, or the broker overshot "
    "Receive Maximum)",
)
STALE_ACKS = Counter(
    "ebrain_mqtt_stale_acks_total",
    "Acks skipped: the message came on an earlier connection (broker resends)",
)
RECONNECTS = Counter("ebrain_mqtt_connects_total", "Successful CONNACKs (first connect and reconnects)")

_MAX_RECEIVE = 65535
_PUBACK = struct.Struct("!BBH")  # fixed header, remaining length 2, packet id: success needs no reason code
# Batched acks use paho's private packet queue (paho-mqtt 2.x, pinned <3); without it, one ack() per message.
_CAN_BATCH_ACKS = callable(getattr(paho.Client, "_packet_queue", None))
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30


class MqttError(Exception):
    """Base class of every error this module raises."""


class MqttConnectError(MqttError):
    """The broker refused the connection (bad credentials, not authorised...) or never answered."""

    def __init__(self, message: str, reason_code: int | None = None) -> None:
        super().__init__(message)
        self.reason_code = reason_code


class MqttRetryableError(MqttError):
    """Transient: the same call may succeed later (queue full, not connected)."""


class MqttQueueFullError(MqttRetryableError):
    """The outgoing queue (`max_queued_outgoing`) is full: slow down and retry."""


class MqttNotConnectedError(MqttRetryableError):
    """A QoS 0 publish cannot be queued while disconnected."""


class MqttPublishError(MqttError):
    """The broker answered a publish with a failure reason code (e.g. not authorised)."""


@dataclass(frozen=True)
class MqttMessage:
    """One incoming message. `user_properties` are the MQTT v5 user properties in order."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    retain: bool
    user_properties: tuple[tuple[str, str], ...] = ()
    # Which connection delivered it: a packet id is only meaningful on the connection that sent it.
    generation: int = field(default=0, compare=False, repr=False)


class MqttClient(Lifecycle):
    """Async MQTT v5 client; use as `async with MqttClient(settings, client_id=...) as client:`."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        client_id: str,
        clean_start: bool = False,
        manual_ack: bool = False,
        max_queued_incoming: int = 1000,
        max_queued_outgoing: int = 10000,
        connect_timeout_s: float = 10.0,
    ) -> None:
        if not 1 <= max_queued_incoming <= _MAX_RECEIVE:
            raise ValueError(f"max_queued_incoming must be in 1..{_MAX_RECEIVE}")
        self._settings = settings
        self._client_id = client_id
        self._clean_start = clean_start
        self._manual_ack = manual_ack
        self._max_in = max_queued_incoming
        self._max_out = max_queued_outgoing
        self._connect_timeout_s = connect_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._paho: paho.Client | None = None
        # +1: room for the end-of-stream marker. Reading pauses when `max_queued_incoming` are queued and
        # resumes at half, so the queue can never overflow.
        self._queue: asyncio.Queue[MqttMessage | None] = asyncio.Queue(maxsize=max_queued_incoming + 1)
        self._resume_at = max_queued_incoming // 2
        self._driver: PahoDriver | None = None
        self._connected = asyncio.Event()
        self._first_connack: asyncio.Future[ReasonCode] | None = None
        self._pending_pubs: dict[int, asyncio.Future[None]] = {}
        self._pending_subs: dict[int, asyncio.Future[None]] = {}
        self._subscriptions: dict[str, int] = {}
        self._generation = 0
        # QoS 1 acks due, as (packet id, connection generation), sent as one write per loop iteration.
        self._acks: list[tuple[int, int]] = []
        self._ack_flush_scheduled = False
        self._started = False
        self._session_present = False

    # -- lifecycle ---------------------------------------------------------------------------------


    async def start(self) -> None:
        """Connect and wait for CONNACK; MqttConnectError if refused or unreachable."""
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._first_connack = self._loop.create_future()
        self._paho = self._build_client()
        self._driver = PahoDriver(self._paho, reconnect_min_s=RECONNECT_MIN_S, reconnect_max_s=RECONNECT_MAX_S,
                                  client_id=self._client_id)
        self._started = True
        s = self._settings
        try:
            self._paho.connect_async(
                s.host,
                s.port,
                keepalive=s.keepalive_s,
                clean_start=self._clean_start_option(),
                properties=self._connect_properties(),
            )
            try:
                await asyncio.wait_for(self._driver.connect(), self._connect_timeout_s)
            except OSError as exc:  # refused, unreachable, TLS failure (TimeoutError is one too)
                raise MqttConnectError(f"cannot reach MQTT broker {s.host}:{s.port}: {exc!r}") from None
            reason = await asyncio.wait_for(self._first_connack, self._connect_timeout_s)
        except TimeoutError:
            await self.stop()
            raise MqttConnectError(f"no CONNACK from {s.host}:{s.port} within {self._connect_timeout_s}s") from None
        except BaseException:
            await self.stop()
            raise
        if reason.is_failure:
            await self.stop()
            raise MqttConnectError(f"{s.host}:{s.port} refused the connection: {reason}", reason.value)

    async def stop(self) -> None:
        """Disconnect cleanly; pending calls fail with MqttError and `messages()` ends."""
        if not self._started:
            return
        self._started = False
        client, self._paho = self._paho, None
        driver, self._driver = self._driver, None
        if client is not None and driver is not None:
            self._flush_acks(client)
            await driver.close()
        self._connected.clear()
        self._fail_pending(MqttError("client stopped"))
        self._wake_iterator()

    def _build_client(self) -> paho.Client:
        client = ReadAheadClient(
            CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,  # always: acks go out when the caller is done (see module docstring)
        )
        s = self._settings
        if s.username is not None:
            password = s.password.get_secret_value() if s.password is not None else None
            client.username_pw_set(s.username, password)
        if s.tls:
            context = ssl.create_default_context(cafile=s.ca_file)
            if s.cert_file is not None:
                context.load_cert_chain(s.cert_file, s.key_file)
            client.tls_set_context(context)
        client.max_inflight_messages_set(s.max_inflight)
        client.max_queued_messages_set(self._max_out)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message  # what the fast path (on_publish_received) leaves to paho
        client.on_publish_received = self._on_publish_received
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        return client

    def _clean_start_option(self) -> paho.CleanStartOption:
        # clean_start=True wipes the session on the first connect only: reconnects must resume it,
        # or queued QoS 1 messages would be lost on every network blip.
        return paho.MQTT_CLEAN_START_FIRST_ONLY if self._clean_start else False

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._settings.session_expiry_s
        props.ReceiveMaximum = self._max_in
        return props

    # -- public API --------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True between a successful CONNACK and the next disconnect."""
        return self._connected.is_set()

    @property
    def session_present(self) -> bool:
        """The broker resumed a stored session on the last CONNACK (subscriptions and queued messages kept)."""
        return self._session_present

    @property
    def queued_incoming(self) -> int:
        """Messages received and not yet taken from `messages()` (never above `max_queued_incoming`)."""
        return self._queue.qsize()

    async def wait_connected(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 - agreed API
        """Wait until connected (again); TimeoutError after `timeout` seconds."""
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        """Subscribe and wait for SUBACK; the subscription is renewed after every reconnect."""
        await asyncio.wait_for(self.start_subscribe(topic_filter, qos), self._connect_timeout_s)

    def start_subscribe(self, topic_filter: str, qos: int = 1) -> asyncio.Future[None]:
        """Send SUBSCRIBE now and return the future of its SUBACK (renewed after reconnects like `subscribe`).

        For a resumed session with a backlog: the broker may send queued messages ahead of the SUBACK, and
        they must be consumed before the SUBACK can be read, so waiting for it first would deadlock.
        """
        client = self._require_client()
        self._subscriptions[topic_filter] = qos
        rc, mid = client.subscribe(topic_filter, qos)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            # Not connected now: on_connect subscribes when the connection comes back.
            raise MqttNotConnectedError(f"subscribe {topic_filter!r}: {paho.error_string(rc)}")
        return self._track(self._pending_subs, mid)

    async def publish(
        self, topic: str, payload: bytes, qos: int = 1, *, user_properties: Sequence[tuple[str, str]] = ()
    ) -> None:
        """Publish; for QoS >= 1 return only after the broker acknowledged it (PUBACK/PUBCOMP).

        While disconnected, QoS >= 1 messages wait in paho's queue and go out on reconnect; when that
        queue holds `max_queued_outgoing` messages this raises MqttQueueFullError (retryable).
        """
        client = self._require_client()
        props = None
        if user_properties:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.UserProperty = list(user_properties)
        info = client.publish(topic, payload, qos, properties=props)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            PUBLISH_REJECTED.labels(reason="queue_full").inc()
            raise MqttQueueFullError(f"outgoing queue full ({self._max_out} messages)")
        if qos == 0:
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                PUBLISH_REJECTED.labels(reason="not_connected").inc()
                raise MqttNotConnectedError(f"QoS 0 publish: {paho.error_string(info.rc)}")
            return
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise MqttError(f"publish to {topic!r}: {paho.error_string(info.rc)}")
        # Registering before the first await is race-free: on_publish reaches us via call_soon_threadsafe.
        await self._track(self._pending_pubs, info.mid)

    async def messages(self) -> AsyncIterator[MqttMessage]:
        """Incoming messages in arrival order; ends when the client stops."""
        while True:
            message = await self._queue.get()
            if message is None:
                return
            driver = self._driver
            if driver is not None and driver.paused and self._queue.qsize() <= self._resume_at:
                driver.resume_reading()
            if not self._manual_ack:
                self._send_ack(message)
            yield message

    def ack(self, message: MqttMessage) -> None:
        """Acknowledge a message (only with manual_ack=True); ack in the order messages arrived."""
        if not self._manual_ack:
            raise MqttError("ack() needs manual_ack=True; messages are acked on delivery otherwise")
        self._send_ack(message)

    # -- internals (event loop side) ----------------------------------------------------------------

    def _require_client(self) -> paho.Client:
        if self._paho is None:
            raise MqttError("client not started")
        return self._paho

    def _track(self, pending: dict[int, asyncio.Future[None]], mid: int) -> asyncio.Future[None]:
        assert self._loop is not None
        fut: asyncio.Future[None] = self._loop.create_future()
        pending[mid] = fut
        fut.add_done_callback(lambda _f: pending.pop(mid, None) if pending.get(mid) is _f else None)
        return fut

    def _send_ack(self, message: MqttMessage) -> None:
        if message.qos == 0 or self._paho is None:
            return
        if message.generation != self._generation:
            STALE_ACKS.inc()  # the broker resends it on this connection, and that copy gets acked
            return
        if message.qos == 2 or not _CAN_BATCH_ACKS:
            self._flush_acks(self._paho)  # keeps acks in order
            self._paho.ack(message.mid, message.qos)
            return
        self._acks.append((message.mid, message.generation))
        if not self._ack_flush_scheduled:
            assert self._loop is not None
            self._ack_flush_scheduled = True
            self._loop.call_soon(self._flush_due_acks)

    def _flush_due_acks(self) -> None:
        self._ack_flush_scheduled = False
        if self._paho is not None:
            self._flush_acks(self._paho)

    def _flush_acks(self, client: paho.Client) -> None:
        """Send the QoS 1 acks due as one buffer: one write and one wake-up of the network thread per batch.

        paho's ack() queues one packet and wakes its network thread per message (a socketpair write and a
        GIL hand-over each), which was the largest cost per message in the gateway. PUBACKs are 4 bytes
        each and may be written back to back, so the batch is queued as a single outgoing buffer.
        """
        acks, self._acks = self._acks, []
        generation = self._generation
        due = [mid for mid, gen in acks if gen == generation]
        if len(due) < len(acks):
            STALE_ACKS.inc(len(acks) - len(due))
        if due:
            blob = b"".join([_PUBACK.pack(paho.PUBACK, 2, mid) for mid in due])
            client._packet_queue(paho.PUBACK, blob, 0, 0)  # private: see the docstring

    def _fail_pending(self, error: MqttError) -> None:
        for pending in (self._pending_pubs, self._pending_subs):
            for fut in list(pending.values()):
                if not fut.done():
                    fut.set_exception(error)
            pending.clear()

    def _wake_iterator(self) -> None:
        self._queue.put_nowait(None)  # always fits: reading pauses with one place left free

    def _connack(self, reason: ReasonCode, session_present: bool) -> None:
        self._session_present = session_present and not reason.is_failure
        if self._first_connack is not None and not self._first_connack.done():
            self._first_connack.set_result(reason)
        if reason.is_failure:
            log.warning("mqtt connect refused", extra={"client_id": self._client_id, "reason": str(reason)})
            return
        self._connected.set()
        RECONNECTS.inc()
        log.info("mqtt connected", extra={"client_id": self._client_id, "session_present": session_present})

    def _disconnected(self, reason: ReasonCode) -> None:
        self._connected.clear()
        if self._started:
            log.warning("mqtt disconnected", extra={"client_id": self._client_id, "reason": str(reason)})
            if self._driver is not None:
                self._driver.connection_lost()

    def _resolve(self, pending: dict[int, asyncio.Future[None]], mid: int, error: MqttError | None) -> None:
        fut = pending.pop(mid, None)
        if fut is None or fut.done():
            return
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(error)

    # -- paho callbacks (run on the event loop: the driver reads and writes the socket there) -------------

    def _call(self, fn: Any, *args: Any) -> None:
        if self._loop is None or self._loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:  # not expected (paho calls back while reading or writing, on the loop), but stay safe
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_connect(
        self,
        client: paho.Client,
        _userdata: Any,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        _props: Properties | None,
    ) -> None:
        if not reason.is_failure:
            # Bumped here, not on the loop: messages of this connection may arrive before _connack runs.
            self._generation += 1
            # Renew subscriptions from this thread so they are in place before any message flows.
            for topic_filter, qos in list(self._subscriptions.items()):
                client.subscribe(topic_filter, qos)
        self._call(self._connack, reason, flags.session_present)

    def _on_disconnect(
        self,
        _client: paho.Client,
        _userdata: Any,
        _flags: paho.DisconnectFlags,
        reason: ReasonCode,
        _props: Properties | None,
    ) -> None:
        self._call(self._disconnected, reason)

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        user_props = getattr(msg.properties, "UserProperty", None) or []
        message = MqttMessage(
            topic=msg.topic,
            payload=bytes(msg.payload),
            qos=msg.qos,
            mid=msg.mid,
            retain=bool(msg.retain),
            user_properties=tuple((str(k), str(v)) for k, v in user_props),
            generation=self._generation,
        )
        self._call(self._enqueue, message)

    def _on_publish_received(self, publish: Publish, qos: int, retain: bool) -> None:
        # Runs on the loop (the driver reads there): no hand-over needed.
        self._enqueue(MqttMessage(publish.topic, publish.payload, qos, publish.mid, retain,
                                  publish.user_properties, self._generation))

    def _enqueue(self, message: MqttMessage) -> None:
        self._queue.put_nowait(message)  # fits: reading pauses before the queue is full
        if self._queue.qsize() >= self._max_in and self._driver is not None:
            INCOMING_WAITS.inc()
            self._driver.pause_reading()

    def _on_publish(
        self, _client: paho.Client, _userdata: Any, mid: int, reason: ReasonCode, _props: Properties
    ) -> None:
        error = MqttPublishError(f"broker refused publish: {reason}") if reason.is_failure else None
        self._call(self._resolve, self._pending_pubs, mid, error)

    def _on_subscribe(
        self, _client: paho.Client, _userdata: Any, mid: int, reasons: list[ReasonCode], _props: Properties
    ) -> None:
        failed = [str(r) for r in reasons if r.is_failure]
        error = MqttError(f"subscription refused: {', '.join(failed)}") if failed else None
        self._call(self._resolve, self._pending_subs, mid, error)
