"""The receive fast path's PUBLISH parser agrees with paho's own decoder, and refuses what it does not know."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ebrain.mqtt_wire import parse_publish, varint

text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=30)


def _body(topic: str, mid: int, qos: int, props: Properties | None, payload: bytes) -> bytes:
    raw_topic = topic.encode()
    head = struct.pack("!H", len(raw_topic)) + raw_topic + (struct.pack("!H", mid) if qos else b"")
    packed = props.pack() if props is not None else b"\x00"
    return head + packed + payload


@settings(max_examples=300)
@given(
    topic=text.filter(bool),
    mid=st.integers(1, 65535),
    qos=st.sampled_from([0, 1]),
    users=st.lists(st.tuples(text, text), max_size=4),
    expiry=st.none() | st.integers(0, 2**32 - 1),
    content_type=st.none() | text,
    correlation=st.none() | st.binary(max_size=20),
    payload=st.binary(max_size=2000),
)
def test_parse_matches_paho(topic: str, mid: int, qos: int, users: list[tuple[str, str]], expiry: int | None,
                            content_type: str | None, correlation: bytes | None, payload: bytes) -> None:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if users:
        props.UserProperty = users
    if expiry is not None:
        props.MessageExpiryInterval = expiry
    if content_type is not None:
        props.ContentType = content_type
    if correlation is not None:
        props.CorrelationData = correlation
    body = _body(topic, mid, qos, props, payload)
    ours = parse_publish(body, qos)
    theirs = _packet.decode_publish(qos << 1, bytearray(body), MQTTProtocolVersion.MQTTv5)
    assert ours.topic == theirs.topic.decode()
    assert ours.mid == (theirs.mid if qos else 0)
    assert ours.payload == theirs.payload == payload
    assert list(ours.user_properties) == list(getattr(theirs.properties, "UserProperty", []))


@pytest.mark.parametrize(
    "body",
    [
        b"\x00\x05ab",  # topic runs past the packet
        b"\x00\x01a\x00\x01\x05\x26",  # properties run past the packet
        b"\x00\x01a\x00\x01\x02\x99\x00",  # not a PUBLISH property
        b"\x00\x01\xff\x00\x01\x00",  # topic is not UTF-8
        b"\x00\x01a\x00\x01\xff\xff\xff\xff\x01",  # length varint over 4 bytes
    ],
)
def test_malformed_bodies_are_refused(body: bytes) -> None:
    with pytest.raises((ValueError, IndexError)):
        parse_publish(body, 1)


@given(st.integers(0, 268_435_455))
def test_varint_round_trip(value: int) -> None:
    out, n = bytearray(), value
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            break
    assert varint(bytes(out) + b"tail", 0) == (value, len(out))
