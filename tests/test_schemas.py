"""Schemas: round trips (Hypothesis), strict rejection of bad input, upcasting of kept old samples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import (
    PAYLOAD_TYPES,
    DeadLetter,
    Escalation,
    Feedback,
    InferenceRequest,
    InferenceResult,
    InvalidMessage,
    ModelUpdate,
    Reason,
    Telemetry,
    dead_letter,
    decode,
    encode,
    from_dict,
    make,
    new_id,
    new_trace_id,
    topics,
)
from schemas.export import json_schemas

SAMPLES = Path(__file__).parent / "samples"
names = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True)
idents = st.from_regex(r"[A-Za-z0-9._:-]{1,40}", fullmatch=True)
texts = st.text(max_size=300)
short = st.text(max_size=40)
scores = st.dictionaries(short, st.floats(allow_nan=False, allow_infinity=False), max_size=4)

requests = st.builds(
    InferenceRequest,
    request_id=idents,
    prompt=st.text(min_size=1, max_size=300),
    system=st.none() | texts,
    max_tokens=st.integers(1, 4096),
    temperature=st.floats(0, 2),
    tags=st.lists(short, max_size=4).map(tuple),
    deadline_ms=st.none() | st.integers(1, 10**7),
)
results = st.builds(
    InferenceResult,
    request_id=idents,
    route=st.sampled_from(["local", "cloud", "cache"]),
    status=st.sampled_from(["ok", "deferred", "failed", "rejected"]),
    text=texts,
    model_id=short,
    model_version=short,
    prompt_tokens=st.integers(0, 10**6),
    completion_tokens=st.integers(0, 10**6),
    latency_ms=st.floats(0, 1e7),
    confidence=st.none() | st.floats(0, 1),
    reason=short,
    scores=scores,
)
escalations = st.builds(Escalation, request=requests, reason=short, scores=scores, draft=st.none() | texts)
telemetry = st.builds(
    Telemetry, model_id=short, model_version=short, uptime_s=st.floats(0, 1e9), counters=scores.map(
        lambda d: {k: abs(v) for k, v in d.items()}
    )
)
updates = st.builds(
    ModelUpdate,
    model_id=short,
    version=short,
    sha256=st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
    size_bytes=st.integers(1, 10**10),
    canary=st.booleans(),
    url=st.none() | short,
)
feedback = st.builds(Feedback, request_id=idents, rating=st.integers(-1, 1), comment=st.none() | texts)
payloads = st.one_of(requests, results, escalations, telemetry, updates, feedback)


@settings(max_examples=200)
@given(payload=payloads, tenant=names, device=names)
def test_every_payload_round_trips_through_the_codec(payload: Any, tenant: str, device: str) -> None:
    envelope = make(payload, tenant=tenant, device=device)
    decoded = decode(encode(envelope))
    assert decoded == envelope
    assert decoded.data == payload
    assert decoded.key == f"{tenant}/{device}"


@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_anything_but_invalid_message(raw: bytes) -> None:
    reason: Reason | None = None
    try:
        decode(raw)
    except InvalidMessage as exc:
        reason = exc.reason
    assert reason is None or isinstance(reason, Reason)


def _good() -> dict[str, Any]:
    env = make(InferenceRequest(request_id="r1", prompt="hi"), tenant="acme", device="d1")
    return json.loads(encode(env))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe", Reason.INVALID_UTF8),
        (b"{not json", Reason.INVALID_JSON),
        (b'{"a": NaN}', Reason.INVALID_JSON),
        (b"[" * 100_000 + b"]" * 100_000, Reason.INVALID_JSON),
        (b"[" * 5000 + b"]" * 5000, Reason.INVALID_JSON),
        (b"[1, 2]", Reason.NOT_AN_OBJECT),
        (b'{"type": "ebrain.nope"}', Reason.UNKNOWN_TYPE),
        (b"x" * 300_000, Reason.OVERSIZE),
    ],
)
def test_bad_bytes_are_refused_with_a_reason(raw: bytes, reason: Reason) -> None:
    with pytest.raises(InvalidMessage) as info:
        decode(raw)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda o: o.update(schema_version=99), Reason.UNSUPPORTED_VERSION),
        (lambda o: o.update(schema_version=0), Reason.UNSUPPORTED_VERSION),
        (lambda o: o.update(schema_version="2"), Reason.SCHEMA_VIOLATION),
        (lambda o: o.update(tenant="Acme/../x"), Reason.SCHEMA_VIOLATION),
        (lambda o: o.update(device="+"), Reason.SCHEMA_VIOLATION),
        (lambda o: o.update(extra_field=1), Reason.SCHEMA_VIOLATION),
        (lambda o: o["data"].update(max_tokens="many"), Reason.SCHEMA_VIOLATION),
        (lambda o: o["data"].update(prompt=""), Reason.SCHEMA_VIOLATION),
        (lambda o: o["data"].pop("request_id"), Reason.SCHEMA_VIOLATION),
        (lambda o: o.update(trace_id="xyz"), Reason.SCHEMA_VIOLATION),
        (lambda o: o.update(time="2026-01-01T00:00:00"), Reason.SCHEMA_VIOLATION),
        (lambda o: o.update(data=[1]), Reason.SCHEMA_VIOLATION),
    ],
)
def test_schema_violations_are_refused(mutate: Any, reason: Reason) -> None:
    obj = _good()
    mutate(obj)
    with pytest.raises(InvalidMessage) as info:
        from_dict(obj)
    assert info.value.reason == reason


def test_v1_request_sample_is_upcast_to_the_current_version() -> None:
    envelope = decode((SAMPLES / "inference_request_v1.json").read_bytes())
    assert envelope.schema_version == InferenceRequest.VERSION == 2
    assert envelope.data.max_tokens == 32
    assert envelope.data.tags == ()


def test_encode_refuses_oversize() -> None:
    env = make(InferenceRequest(request_id="r", prompt="x" * 30_000), tenant="a", device="b")
    with pytest.raises(InvalidMessage) as info:
        encode(env, max_bytes=1000)
    assert info.value.reason == Reason.OVERSIZE


def test_ids_sort_by_time_and_trace_ids_are_w3c() -> None:
    ids = [new_id() for _ in range(50)]
    assert all(len(i) == 26 for i in ids)
    assert len(set(ids)) == 50
    assert ids[0][:10] <= ids[-1][:10]
    assert len(new_trace_id()) == 32


def test_dead_letter_keeps_raw_bytes_and_reason() -> None:
    raw = b"\x00garbage"
    env = dead_letter(raw, InvalidMessage(Reason.INVALID_JSON, "bad"), source_topic="t", component="gw")
    assert isinstance(env.data, DeadLetter)
    assert env.data.reason == "invalid_json"
    assert env.data.raw_size == len(raw)
    assert env.tenant == "unknown"
    assert decode(encode(env)) == env


def test_json_schema_export_covers_every_type() -> None:
    schemas = json_schemas()
    assert len(schemas) == len(PAYLOAD_TYPES)
    for payload in PAYLOAD_TYPES:
        doc = schemas[f"{payload.TYPE}.v{payload.VERSION}.schema.json"]
        assert doc["properties"]["type"]["const"] == payload.TYPE
        assert "data" in doc["required"]


@given(tenant=names, device=names, kind=st.sampled_from(sorted(topics.UPLINK_KINDS)))
def test_uplink_topics_parse_back(tenant: str, device: str, kind: str) -> None:
    address = topics.parse_mqtt(topics.mqtt_uplink(tenant, device, kind))
    assert (address.tenant, address.device, address.kind, address.downlink) == (tenant, device, kind, False)


@given(tenant=names, device=names, kind=st.sampled_from(sorted(topics.DOWNLINK_KINDS)))
def test_downlink_topics_parse_back(tenant: str, device: str, kind: str) -> None:
    address = topics.parse_mqtt(topics.mqtt_downlink(tenant, device, kind))
    assert address.downlink
    assert topics.parse_kafka_downlink(topics.kafka_downlink(kind)) == kind


@pytest.mark.parametrize(
    "topic",
    ["ebrain/acme/d1", "ebrain/acme/d1/unknown", "ebrain/ACME/d1/result", "ebrain/a/+/result",
     "other/acme/d1/result", "ebrain/acme/d1/down/escalation", "ebrain/acme/d1/result/extra/x"],
)
def test_forged_or_foreign_topics_are_refused(topic: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        topics.parse_mqtt(topic)
    assert info.value.reason == Reason.BAD_TOPIC


def test_kafka_topic_list_is_complete() -> None:
    names_ = topics.all_kafka_topics()
    assert "ebrain.escalation" in names_
    assert "ebrain.down.result" in names_
    assert topics.KAFKA_DEADLETTER in names_


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: o["data"].update(max_tokens="5"),
        lambda o: o["data"].update(temperature="0.5"),
        lambda o: o["data"].update(prompt=5),
        lambda o: o["data"].update(max_tokens=5.5),
    ],
)
def test_validation_is_strict_no_coercion(mutate: Any) -> None:
    obj = _good()
    mutate(obj)
    with pytest.raises(InvalidMessage) as info:
        decode(json.dumps(obj).encode())
    assert info.value.reason == Reason.SCHEMA_VIOLATION


def test_oversize_input_can_always_be_dead_lettered() -> None:
    raw = b"x" * 1_000_000
    env = dead_letter(raw, InvalidMessage(Reason.OVERSIZE, "too big"), source_topic="t", component="gw")
    assert env.data.raw_size == len(raw)
    assert "first" in env.data.detail
    assert len(encode(env)) < 256 * 1024


def _slow_decode(raw: bytes) -> Any:
    """The step-by-step path decode() falls back to: the reference its one-pass fast path must agree with."""
    from schemas.codec import parse_json  # noqa: PLC0415

    return from_dict(parse_json(raw), raw=raw)


def _outcome(fn: Any, raw: bytes) -> Any:
    try:
        return fn(raw)
    except InvalidMessage as exc:
        return exc.reason


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: o.update(schema_version=99),
        lambda o: o.update(schema_version="2"),
        lambda o: o.update(type="ebrain.inference.result"),
        lambda o: o.update(tenant="Acme/../x"),
        lambda o: o.update(extra_field=1),
        lambda o: o["data"].update(max_tokens="many"),
        lambda o: o["data"].update(temperature=True),
        lambda o: o["data"].update(type="ebrain.telemetry"),
        lambda o: o.update(time="2026-01-01T00:00:00"),
        lambda o: o.update(data=[1]),
    ],
)
def test_fast_path_refuses_what_the_slow_path_refuses(mutate: Any) -> None:
    obj = _good()
    mutate(obj)
    raw = json.dumps(obj, separators=(",", ":")).encode()  # compact, like encode(): the fast path's shape
    assert _outcome(decode, raw) == _outcome(_slow_decode, raw)
    assert isinstance(_outcome(decode, raw), Reason)


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_non_finite_numbers_are_refused_on_every_path(number: bytes) -> None:
    env = make(InferenceResult(request_id="r", route="local", model_id="m", model_version="1", latency_ms=1.0,
                               scores={"a": 0.5}), tenant="acme", device="d1")
    raw = encode(env).replace(b'"a":0.5', b'"a":' + number)
    with pytest.raises(InvalidMessage):
        decode(raw)


@settings(max_examples=300)
@given(payload=payloads, cut=st.integers(0, 2000), junk=st.binary(max_size=8))
def test_fast_and_slow_paths_agree_on_damaged_bytes(payload: Any, cut: int, junk: bytes) -> None:
    raw = encode(make(payload, tenant="acme", device="d1"))
    cut %= len(raw) + 1
    for candidate in (raw, raw[:cut] + junk + raw[cut + len(junk):], raw[:cut]):
        fast, slow = _outcome(decode, candidate), _outcome(_slow_decode, candidate)
        assert fast == slow, candidate
