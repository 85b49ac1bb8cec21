"""paho-mqtt driven by the asyncio event loop (paho's external-loop API): no network thread.

With paho's own thread (`loop_start`), every message crossed threads twice (a wake-up of the loop per batch,
a wake-up of paho per write) and the two threads fought over the GIL: profiles of the gateway showed the
event loop waiting in socket writes while paho held the GIL. Here one thread does everything: the socket
is registered with the event loop (`add_reader` / `add_writer`), keepalive runs as a task, and reconnects
are a task with capped exponential backoff. Only the blocking TCP/TLS connect runs in a worker thread.

Reading can be paused (`pause_reading`): the socket is then not read at all, so TCP pushes back on the
broker; this is how the client's bounded incoming queue is enforced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion

from ebrain.mqtt_wire import Publish, parse_publish

log = logging.getLogger(__name__)

READ_BUDGET = 256  # packets read per callback before yielding to other tasks
MISC_INTERVAL_S = 1.0
# The driver reads packet by packet with paho's private `_packet_read` (paho-mqtt 2.x, pinned <3): loop_read()
# returns the same code whether it read a packet or found the socket empty, so with ReadAheadClient's buffer it
# could not tell when to stop. tests/test_mqtt_client.py fails if a paho release changes these internals.


READ_AHEAD = 65536


class ReadAheadClient(paho.Client):
    """paho's client, reading the socket in chunks: paho asks for each packet in three or more recv calls
    (command byte, each remaining-length byte, body), one system call each; here most come from memory.

    The buffer belongs to one socket: a new connection starts empty. Data can sit in the buffer while the
    socket itself is not readable, so whoever drives the reads must keep reading until recv raises
    BlockingIOError (PahoDriver does) rather than wait for the socket.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ahead = b""
        self._ahead_pos = 0
        self._ahead_sock: Any = None
        # Set by the owner: QoS 0/1 PUBLISHes go straight to it, parsed by ebrain.mqtt_wire (see there).
        self.on_publish_received: Callable[[Publish, int, bool], None] | None = None

    def _handle_publish(self) -> MQTTErrorCode:
        hook = self.on_publish_received
        header = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        if hook is None or qos == 2 or self._protocol != MQTTProtocolVersion.MQTTv5:
            return super()._handle_publish()
        try:
            publish = parse_publish(bytes(self._in_packet["packet"]), qos)
        except (ValueError, IndexError):
            return super()._handle_publish()  # paho's decoder: same behaviour as without the fast path
        hook(publish, qos, bool(header & 0x01))
        if qos == 1 and not self._manual_ack:
            return self._send_puback(publish.mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._ahead_sock is not self._sock:
            self._ahead, self._ahead_pos, self._ahead_sock = b"", 0, self._sock
        if self._ahead_pos >= len(self._ahead):
            data = super()._sock_recv(max(bufsize, READ_AHEAD))
            if len(data) <= bufsize:
                return data  # EOF (b"") or all of it: no copy
            self._ahead, self._ahead_pos = data, 0
        start = self._ahead_pos
        self._ahead_pos = start + bufsize
        return self._ahead[start:start + bufsize]


class PahoDriver:
    """Runs one paho client on the running event loop; `connect()`, then `close()` when done."""

    def __init__(
        self,
        client: paho.Client,
        *,
        reconnect_min_s: float,
        reconnect_max_s: float,
        client_id: str,
    ) -> None:
        self._client = client
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._min_s, self._max_s = reconnect_min_s, reconnect_max_s
        self._client_id = client_id
        self._sock: Any = None
        self._paused = False
        self._closed = False
        self._misc: asyncio.Task[None] | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write

    async def connect(self) -> None:
        """Open the TCP (and TLS) connection and send CONNECT; OSError if the broker cannot be reached.

        `connect_async()` must have been called on the client first (it records host, port and options).
        """
        await asyncio.to_thread(self._client.reconnect)
        if self._misc is None:
            self._misc = self._loop.create_task(self._keepalive(), name=f"mqtt-misc-{self._client_id}")

    def connection_lost(self) -> None:
        """Call from on_disconnect: reconnect in the background (capped backoff) unless closed."""
        if self._closed or (self._reconnecting is not None and not self._reconnecting.done()):
            return
        self._reconnecting = self._loop.create_task(self._reconnect(), name=f"mqtt-reconnect-{self._client_id}")

    async def close(self) -> None:
        """Send DISCONNECT if connected, close the socket, stop the keepalive and reconnect tasks."""
        self._closed = True
        for task in (self._misc, self._reconnecting):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        client = self._client
        client.disconnect()
        # Flush what is queued (acks, DISCONNECT); paho closes the socket once DISCONNECT is written.
        for _ in range(100):
            if client.socket() is None:
                break
            client.loop_write()
            if client.socket() is not None:
                await asyncio.sleep(0.01)
        self._close_socket()

    # -- reading with backpressure ------------------------------------------------------------------

    def pause_reading(self) -> None:
        """Stop reading the socket (the caller's queue is full); TCP then holds the broker back."""
        if not self._paused:
            self._paused = True
            if self._sock is not None:
                self._loop.remove_reader(self._sock)

    def resume_reading(self) -> None:
        """Read again; buffered (e.g. TLS) data is read at once, without waiting for the socket."""
        if self._paused:
            self._paused = False
            if self._sock is not None:
                self._loop.add_reader(self._sock, self._readable)
                self._loop.call_soon(self._readable)

    @property
    def paused(self) -> bool:
        """Whether reading is paused."""
        return self._paused

    def _readable(self) -> None:
        client = self._client
        for _ in range(READ_BUDGET):
            if self._paused or client.socket() is None:
                return
            rc = client._packet_read()  # private: why, at the top of this module
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                return
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                client._loop_rc_handle(rc)  # closes the socket and calls on_disconnect
                return
        self._loop.call_soon(self._readable)  # more may be buffered (TLS); let other tasks run first

    def _writable(self) -> None:
        self._client.loop_write()

    # -- background tasks ---------------------------------------------------------------------------

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(MISC_INTERVAL_S)
            self._client.loop_misc()  # PINGREQ when due; closes a connection whose PINGRESP never came

    async def _reconnect(self) -> None:
        delay = self._min_s
        while not self._closed:
            await asyncio.sleep(delay)
            try:
                await asyncio.to_thread(self._client.reconnect)
            except OSError as exc:
                log.info("mqtt reconnect failed", extra={"client_id": self._client_id, "error": repr(exc),
                                                         "retry_in_s": min(delay * 2, self._max_s)})
                delay = min(delay * 2, self._max_s)
            else:
                if self._client.socket() is not None:
                    return  # CONNECT sent; a refused CONNACK ends in on_disconnect, which comes back here
                # The connection died before this task resumed (a proxy that accepts, then resets): its
                # on_disconnect saw this task still running and left the retry to it.
                delay = min(delay * 2, self._max_s)

    # -- paho socket callbacks (the connect ones run in the worker thread) -----------------------------

    def _in_loop(self, fn: Callable[..., None], *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_socket_open(self, _client: paho.Client, _userdata: Any, sock: Any) -> None:
        self._in_loop(self._watch, sock)

    def _on_socket_close(self, _client: paho.Client, _userdata: Any, sock: Any) -> None:
        self._in_loop(self._unwatch, sock)

    def _on_socket_register_write(self, _client: paho.Client, _userdata: Any, sock: Any) -> None:
        self._in_loop(self._want_write, sock)

    def _on_socket_unregister_write(self, _client: paho.Client, _userdata: Any, sock: Any) -> None:
        self._in_loop(self._done_writing, sock)

    def _watch(self, sock: Any) -> None:
        if self._closed and self._client.socket() is None:
            return
        self._sock = sock
        if not self._paused:
            self._loop.add_reader(sock, self._readable)

    def _unwatch(self, sock: Any) -> None:
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)
        if self._sock is sock:
            self._sock = None

    def _want_write(self, sock: Any) -> None:
        current: Any = self._client.socket()
        if current is not None and current is sock and sock is self._sock:
            self._loop.add_writer(current, self._writable)

    def _done_writing(self, sock: Any) -> None:
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_writer(sock)

    def _close_socket(self) -> None:
        client = self._client
        if client.socket() is not None:
            if callable(getattr(client, "_sock_close", None)):
                client._sock_close()  # private: also tells paho the socket is gone (calls on_socket_close)
            else:
                sock = client.socket()
                self._unwatch(sock)
                with contextlib.suppress(OSError):
                    sock.close()  # type: ignore[union-attr]
        if self._sock is not None:
            self._unwatch(self._sock)
