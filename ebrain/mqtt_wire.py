"""MQTT v5 PUBLISH parsing for the receive hot path: topic, packet id, user properties, payload. No I/O.

paho decodes every PUBLISH into a Properties object (a generic, table-driven parser) and an MQTTMessage, then
matches the topic against per-topic callbacks; for a ~1 KB message that was a third of the gateway's
receive cost. This parser reads only what the client passes on and skips the other properties by their
wire types (MQTT 5.0, section 3.3.2.3). Anything it does not fully understand raises ValueError, and the
caller hands the packet to paho's own decoder instead, so unusual packets behave exactly as before.
"""

from __future__ import annotations

from typing import NamedTuple

USER_PROPERTY = 0x26
# Other PUBLISH properties and their sizes: fixed byte counts, or "s" (UTF-8 string / binary data with a
# two-byte length) or "v" (variable byte integer).
_SKIP: dict[int, int | str] = {
    0x01: 1,  # payload format indicator
    0x02: 4,  # message expiry interval
    0x03: "s",  # content type
    0x08: "s",  # response topic
    0x09: "s",  # correlation data
    0x0B: "v",  # subscription identifier
    0x23: 2,  # topic alias
}


class Publish(NamedTuple):
    """The parts of a PUBLISH packet the client passes on."""

    topic: str
    mid: int
    user_properties: tuple[tuple[str, str], ...]
    payload: bytes


def varint(data: bytes, pos: int) -> tuple[int, int]:
    """A variable byte integer at `pos`: (value, position after it); ValueError if longer than 4 bytes."""
    value, shift = 0, 0
    for i in range(4):
        byte = data[pos + i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos + i + 1
        shift += 7
    raise ValueError("variable byte integer longer than 4 bytes")


def _string(data: bytes, pos: int) -> tuple[bytes, int]:
    end = pos + 2 + ((data[pos] << 8) | data[pos + 1])
    if end > len(data):
        raise ValueError("string runs past the packet")
    return data[pos + 2:end], end


def parse_publish(body: bytes, qos: int) -> Publish:
    """Parse a v5 PUBLISH body (everything after the fixed header); ValueError (or IndexError) if malformed."""
    raw_topic, pos = _string(body, 0)
    topic = raw_topic.decode("utf-8")  # strict: invalid UTF-8 raises (a ValueError)
    mid = 0
    if qos:
        mid = (body[pos] << 8) | body[pos + 1]
        pos += 2
    length, pos = varint(body, pos)
    end = pos + length
    if end > len(body):
        raise ValueError("properties run past the packet")
    props: list[tuple[str, str]] = []
    while pos < end:
        ident = body[pos]
        pos += 1
        if ident == USER_PROPERTY:
            key, pos = _string(body, pos)
            value, pos = _string(body, pos)
            props.append((key.decode("utf-8"), value.decode("utf-8")))
            continue
        size = _SKIP.get(ident)
        if size is None:
            raise ValueError(f"property {ident:#x} is not a PUBLISH property")
        if size == "s":
            _, pos = _string(body, pos)
        elif size == "v":
            _, pos = varint(body, pos)
        else:
            pos += int(size)
    if pos != end:
        raise ValueError("properties overrun their length")
    return Publish(topic, mid, tuple(props), body[end:])
