"""A fault-injecting TCP proxy (a small toxiproxy) between a client and one upstream server.

Modes, switched at run time with `set_mode`:

- `up`: bytes pass both ways;
- `down`: nothing listens (connection refused), as when the server's host is gone;
- `hang`: connections are accepted and read, but nothing is forwarded or answered (a hung server);
- `http503`: every HTTP request is answered `503 Service Unavailable` with `Retry-After: 1` (an overloaded
  OpenAI-compatible server) and the connection closed.

Every switch aborts the connections open at that moment, so pooled clients meet the new mode at once instead
of on their next reconnect. Kafka clients work through it when the broker advertises the proxy's port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Literal

from ebrain.lifecycle import Lifecycle

log = logging.getLogger(__name__)

Mode = Literal["up", "down", "hang", "http503"]
CHUNK = 65536
_BODY_503 = b'{"error": {"message": "chaos: service unavailable", "type": "server_error", "code": 503}}'


class FaultProxy(Lifecycle):
    """Listens on 127.0.0.1:`port` (0: a free one) and forwards to 127.0.0.1:`upstream_port`."""

    def __init__(self, upstream_port: int, *, port: int = 0, name: str = "proxy") -> None:
        self.name, self.upstream_port, self.port = name, upstream_port, port
        self.mode: Mode = "up"
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.counters: dict[str, int] = {"accepted": 0, "aborted": 0, "answered_503": 0}

    async def start(self) -> None:
        if self._server is None and self.mode != "down":
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
            self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        await self._close_listener()
        self._abort_all()  # each connection's handler (a task of asyncio's server) ends on the abort

    async def set_mode(self, mode: Mode) -> None:
        """Switch to `mode`; open connections are cut so clients see the change now."""
        if mode == self.mode:
            return
        log.info("proxy mode", extra={"proxy": self.name, "from": self.mode, "to": mode})
        self.mode = mode
        self._abort_all()
        if mode == "down":
            await self._close_listener()
        else:
            await self.start()

    async def _close_listener(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    def _abort_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
            self.counters["aborted"] += 1
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counters["accepted"] += 1
        self._writers.add(writer)
        try:
            if self.mode == "hang":
                while await reader.read(CHUNK):
                    pass
            elif self.mode == "http503":
                await _answer_503(reader, writer)
                self.counters["answered_503"] += 1
            elif self.mode == "up":
                await self._forward(reader, writer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers.add(up_writer)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(_pipe(reader, up_writer))
                group.create_task(_pipe(up_reader, writer))
        except* (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(up_writer)
            up_writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(CHUNK):
        writer.write(data)
        await writer.drain()
    writer.transport.abort()  # one side closed: close both (the peer pipe ends on its reader)


async def _answer_503(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length" and value.strip().isdigit():
            await reader.readexactly(int(value.strip()))
    writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
                 b"Connection: close\r\nContent-Length: " + str(len(_BODY_503)).encode() + b"\r\n\r\n" + _BODY_503)
    await writer.drain()
