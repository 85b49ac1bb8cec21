"""Probes: does a port accept connections, does a Redis answer PING, does it have vector sets (VADD).

A tiny RESP client over a socket keeps the stack free of a redis-py dependency.
"""

from __future__ import annotations

import socket
import uuid
from typing import Any
from urllib.parse import unquote, urlsplit

from ebrain.stack.core import Endpoint

_TIMEOUT_S = 1.0


def tcp_open(ep: Endpoint, timeout_s: float = _TIMEOUT_S) -> bool:
    """True if ep accepts a TCP connection."""
    try:
        with socket.create_connection((ep.host, ep.port), timeout=timeout_s):
            return True
    except OSError:
        return False


class RespError(Exception):
    """The server answered a command with an error reply."""


def _encode(*args: str) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def _read(f: Any) -> Any:
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed mid-reply")
    kind, body = line[:1], line[1:-2]
    if kind in (b"+", b":"):
        return int(body) if kind == b":" else body.decode()
    if kind == b"-":
        raise RespError(body.decode())
    n = int(body)
    if n < 0:
        return None
    if kind == b"$":
        return f.read(n + 2)[:-2]
    if kind == b"*":
        return [_read(f) for _ in range(n)]
    raise ConnectionError(f"not a RESP reply: {line[:40]!r}")


def _commands(url: str, *commands: tuple[str, ...], timeout_s: float) -> list[Any]:
    """Run commands on a fresh connection (AUTH/SELECT from the URL first); return their replies."""
    parts = urlsplit(url)
    ep = Endpoint(parts.hostname or "127.0.0.1", parts.port or 6379)
    pre: list[tuple[str, ...]] = []
    if parts.password is not None:
        user = unquote(parts.username) if parts.username else "default"
        pre.append(("AUTH", user, unquote(parts.password)))
    db = parts.path.strip("/")
    if db and db != "0":
        pre.append(("SELECT", db))
    with socket.create_connection((ep.host, ep.port), timeout=timeout_s) as sock, sock.makefile("rb") as f:
        sock.sendall(b"".join(_encode(*c) for c in (*pre, *commands)))
        replies = [_read(f) for _ in range(len(pre) + len(commands))]
    return replies[len(pre):]


def redis_ping(url: str, timeout_s: float = _TIMEOUT_S) -> bool:
    """True if the Redis at url answers PING with PONG."""
    try:
        return bool(_commands(url, ("PING",), timeout_s=timeout_s) == ["PONG"])
    except (OSError, RespError, ValueError):
        return False


def redis_vector_sets(url: str, timeout_s: float = _TIMEOUT_S) -> bool:
    """True if VADD works: add one element to a scratch key, read it back with VCARD, delete the key."""
    key = f"ebrain:stack:probe:{uuid.uuid4().hex}"
    try:
        added, card, _ = _commands(
            url, ("VADD", key, "VALUES", "2", "1", "0", "probe"), ("VCARD", key), ("DEL", key),
            timeout_s=timeout_s,
        )
    except (OSError, RespError, ValueError):  # RespError: "unknown command 'VADD'" on Redis < 8
        return False
    return bool(added == 1 and card == 1)

