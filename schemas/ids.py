"""Identifiers: message ids that sort by time, W3C trace ids, and the naming rule for tenants and devices."""

from __future__ import annotations

import os
import re
import time

# Tenants and devices appear in MQTT topics, Kafka keys, cache keys and file paths, so the alphabet is narrow:
# no '/', '+', '#', '.', or whitespace that could forge or widen a topic.
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
NAME_RE = re.compile(NAME_PATTERN)

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id() -> str:
    """A 26-char ULID: 48-bit millisecond time then 80 random bits, so ids sort by creation time."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def new_trace_id() -> str:
    """A W3C trace-context trace id: 32 lowercase hex chars, never all zero."""
    while True:
        trace = os.urandom(16).hex()
        if trace != "0" * 32:
            return trace


def valid_name(name: str) -> bool:
    """True when `name` may be used as a tenant or device id."""
    return NAME_RE.fullmatch(name) is not None
