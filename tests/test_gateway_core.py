"""Unit tests of the gateway's pure core: uplink validation, mapping, dead letters, downlink, backoff."""

from __future__ import annotations

import base64
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core import (
    Backoff,
    dead_letter_record,
    downlink_message,
    traceparent,
    uplink_record,
    validate_uplink,
)
from schemas import InferenceRequest, InferenceResult, InvalidMessage, Reason, Telemetry, decode, encode, make
from schemas.topics import KAFKA_DEADLETTER, kafka_downlink, mqtt_uplink

MAX = 4096
T, D = "acme", "dev-1"


def _request(tenant: str = T, device: str = D) -> bytes:
    return encode(make(InferenceRequest(request_id="r1", prompt="hello"), tenant=tenant, device=device))


def _reason(topic: str, raw: bytes) -> Reason:
    with pytest.raises(InvalidMessage) as caught:
        validate_uplink(topic, raw, max_bytes=MAX)
    return caught.value.reason


def test_valid_uplink_maps_to_kind_topic_with_device_key_and_cloudevents_headers() -> None:
    raw = _request()
    envelope = validate_uplink(mqtt_uplink(T, D, "request"), raw, max_bytes=MAX)
    record = uplink_record(envelope, span_id="00f067aa0ba902b7")
    headers = dict(record.headers)
    assert (record.topic, record.key) == ("ebrain.request", b"acme/dev-1")
    assert decode(record.value) == envelope
    assert headers["ce_id"] == envelope.id.encode()
    assert headers["ce_type"] == b"ebrain.inference.request"
    assert headers["ce_source"] == envelope.source.encode()
    assert (headers["tenant"], headers["device"]) == (b"acme", b"dev-1")
    assert headers["traceparent"] == f"00-{envelope.trace_id}-00f067aa0ba902b7-01".encode()


def test_traceparent_is_w3c_shaped_with_a_fresh_span() -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    first, second = traceparent(trace), traceparent(trace)
    assert re.fullmatch(r"00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01", first)
    assert first != second


@pytest.mark.parametrize(
    ("topic", "raw", "reason"),
    [
        (mqtt_uplink(T, D, "request"), _request(tenant="other"), Reason.TOPIC_MISMATCH),
        (mqtt_uplink(T, D, "request"), _request(device="dev-2"), Reason.TOPIC_MISMATCH),
        (mqtt_uplink(T, D, "telemetry"), _request(), Reason.TOPIC_MISMATCH),  # payload kind != topic kind
        ("ebrain/acme/dev-1/model_update", _request(), Reason.BAD_TOPIC),  # a downlink-only kind
        ("ebrain/acme/dev-1/down/result", _request(), Reason.BAD_TOPIC),
        ("ebrain/ACME/dev-1/request", _request(), Reason.BAD_TOPIC),
        ("other/acme/dev-1/request", _request(), Reason.BAD_TOPIC),
        (mqtt_uplink(T, D, "request"), b"{not json", Reason.INVALID_JSON),
        (mqtt_uplink(T, D, "request"), b"\xff\xfe", Reason.INVALID_UTF8),
        (mqtt_uplink(T, D, "request"), b"[]", Reason.NOT_AN_OBJECT),
        (mqtt_uplink(T, D, "request"), b" " * (MAX + 1), Reason.OVERSIZE),
    ],
)
def test_refused_uplinks_carry_their_reason(topic: str, raw: bytes, reason: Reason) -> None:
    assert _reason(topic, raw) == reason


def test_unknown_schema_version_is_refused() -> None:
    obj = json.loads(_request())
    obj["schema_version"] = 99
    assert _reason(mqtt_uplink(T, D, "request"), json.dumps(obj).encode()) == Reason.UNSUPPORTED_VERSION


def test_old_schema_version_is_upcast_and_forwarded_as_current() -> None:
    obj = json.loads(_request())
    obj["schema_version"] = 1
    obj["data"]["max_new_tokens"] = obj["data"].pop("max_tokens")
    del obj["data"]["tags"]
    envelope = validate_uplink(mqtt_uplink(T, D, "request"), json.dumps(obj).encode(), max_bytes=MAX)
    assert json.loads(uplink_record(envelope).value)["schema_version"] == InferenceRequest.VERSION


def test_dead_letter_keeps_reason_origin_and_true_size_but_bounds_raw() -> None:
    raw = b"x" * 200_000
    error = InvalidMessage(Reason.OVERSIZE, "too big")
    record = dead_letter_record(mqtt_uplink(T, D, "request"), raw, error)
    dead = decode(record.value)
    assert record.topic == KAFKA_DEADLETTER
    assert dict(record.headers)["reason"] == b"oversize"
    assert (dead.tenant, dead.device, record.key) == (T, D, b"acme/dev-1")
    assert dead.data.reason == "oversize"
    assert dead.data.raw_size == 200_000
    assert len(base64.b64decode(dead.data.raw_b64)) < len(raw)


def test_dead_letter_from_unparseable_topic_is_unknown_device() -> None:
    record = dead_letter_record("garbage/#", b"{}", InvalidMessage(Reason.BAD_TOPIC, "x"))
    assert record.key == b"unknown/unknown"


def test_downlink_record_goes_to_the_envelope_device() -> None:
    result = InferenceResult(request_id="r1", route="cloud", model_id="m", model_version="1", latency_ms=3.0)
    envelope = make(result, tenant=T, device=D)
    out = downlink_message(kafka_downlink("result"), encode(envelope), max_bytes=MAX)
    assert out.topic == "ebrain/acme/dev-1/down/result"
    assert decode(out.payload) == envelope


@pytest.mark.parametrize(
    ("topic", "value", "reason"),
    [
        (kafka_downlink("model_update"), _request(), Reason.TOPIC_MISMATCH),
        ("ebrain.request", _request(), Reason.BAD_TOPIC),
        (kafka_downlink("result"), None, Reason.INVALID_JSON),
        (kafka_downlink("result"), b"\x00garbage", Reason.INVALID_JSON),
    ],
)
def test_bad_downlink_records_are_refused(topic: str, value: bytes | None, reason: Reason) -> None:
    with pytest.raises(InvalidMessage) as caught:
        downlink_message(topic, value, max_bytes=MAX)
    assert caught.value.reason == reason


@given(raw=st.binary(max_size=600), kind=st.sampled_from(["request", "telemetry", "result", "x"]))
def test_validation_never_raises_anything_but_invalid_message(raw: bytes, kind: str) -> None:
    try:
        envelope = validate_uplink(f"ebrain/{T}/{D}/{kind}", raw, max_bytes=MAX)
    except InvalidMessage:
        return  # anything else escaping would fail the test
    assert (envelope.tenant, envelope.device, envelope.data.KIND) == (T, D, kind)


@given(topic=st.text(max_size=80))
def test_any_topic_is_accepted_only_if_it_names_the_envelope_device(topic: str) -> None:
    raw = encode(make(Telemetry(model_id="m", model_version="1", uptime_s=1.0), tenant=T, device=D))
    try:
        envelope = validate_uplink(topic, raw, max_bytes=MAX)
    except InvalidMessage:
        return
    assert topic == mqtt_uplink(envelope.tenant, envelope.device, "telemetry")


@given(attempt=st.integers(min_value=0, max_value=10_000), max_s=st.floats(min_value=0.01, max_value=60))
def test_backoff_is_bounded_and_grows(attempt: int, max_s: float) -> None:
    backoff = Backoff(base_s=0.1, max_s=max_s)
    assert 0 <= backoff.delay(attempt) <= max_s
    assert backoff.ceiling(attempt) <= backoff.ceiling(attempt + 1) <= max_s
