"""Hypothesis generators of malformed messages, each with the reasons it may be refused for (shared by the
fuzz tests of the gateway core, the live gateway and the cloud and ingest workers).

A `Case` is bytes on a topic plus the set of `Reason`s a correct validator may give. Body cases (`bodies`)
break the envelope itself and are wrong on any topic; `uplink_cases` adds what only the MQTT topic can make
wrong (forged tenant or device, another kind, unknown tenant, a topic outside the scheme).
`draw_cases` uses the same strategies as a seeded generator for the live tests, which need a batch up front.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from schemas import InferenceRequest, Reason, Telemetry, encode, make
from schemas.topics import mqtt_uplink

R = Reason
# Byte sequences no UTF-8 decoder accepts: a stray continuation, an invalid start byte, a truncated
# sequence, an overlong '/', a UTF-16 surrogate, a 5-byte form and a code point above U+10FFFF.
BAD_UTF8 = (b"\x80", b"\xff", b"\xc3\x28", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xf4\x90\x80\x80")
NON_FINITE = ("NaN", "Infinity", "-Infinity")
# Envelope and payload fields with what they hold; every value drawn for a field is of another type.
FIELD_TYPES: dict[tuple[str, ...], str] = {
    ("id",): "str", ("source",): "str", ("time",): "str", ("tenant",): "str", ("device",): "str",
    ("trace_id",): "str", ("specversion",): "str", ("datacontenttype",): "str",
    ("data", "request_id"): "str", ("data", "prompt"): "str", ("data", "max_tokens"): "int",
    ("data", "temperature"): "float", ("data", "tags"): "list", ("data", "system"): "str?",
    ("data", "deadline_ms"): "int?",
}
# Dropping any of these makes the envelope invalid (specversion and datacontenttype have defaults).
REQUIRED = (("id",), ("type",), ("source",), ("time",), ("schema_version",), ("tenant",), ("device",),
            ("trace_id",), ("data",), ("data", "request_id"), ("data", "prompt"))


@dataclass(frozen=True)
class Case:
    """One malformed message: `raw` on `topic`, refusable for any reason in `reasons`; `label` says how."""

    label: str
    topic: str
    raw: bytes
    reasons: frozenset[Reason]


names = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True)
prompts = st.text(min_size=1, max_size=200)  # any Unicode: truncation may then split a UTF-8 sequence
scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False,
                                                                                   allow_infinity=False)
json_values = st.recursive(scalars | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=4), max_leaves=12)


def _wrong_for(kind: str) -> st.SearchStrategy[Any]:
    """JSON values a strict validator must refuse for a field of `kind` (pydantic strict: int is a float)."""
    containers = st.lists(json_values, max_size=3) | st.dictionaries(st.text(max_size=8), json_values, max_size=3)
    numbers = st.integers(-(2**40), 2**40) | st.floats(allow_nan=False, allow_infinity=False)
    by_kind = {
        "str": st.booleans() | numbers | containers | st.none(),
        "str?": st.booleans() | numbers | containers,
        "int": st.booleans() | st.text(max_size=8) | containers | st.floats(0.1, 0.9) | st.none(),
        "int?": st.booleans() | st.text(max_size=8) | containers | st.floats(0.1, 0.9),
        "float": st.booleans() | st.text(max_size=8) | containers | st.none(),
        "list": st.booleans() | numbers | st.text(max_size=8) | st.dictionaries(st.text(max_size=8), json_values,
                                                                                  min_size=1, max_size=3),
    }
    return by_kind[kind]


def request_obj(tenant: str, device: str, request_id: str, prompt: str) -> dict[str, Any]:
    """A valid current-version request envelope as a JSON object."""
    env = make(InferenceRequest(request_id=request_id, prompt=prompt), tenant=tenant, device=device)
    obj: dict[str, Any] = json.loads(encode(env))
    return obj


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _set(obj: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(obj))
    target = out
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return out


def _drop(obj: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(obj))
    target = out
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return out


def _fit(raw: bytes, reasons: set[Reason], max_bytes: int) -> frozenset[Reason]:
    """Size is checked before anything else: over the cap the only right answer is oversize."""
    return frozenset({R.OVERSIZE}) if len(raw) > max_bytes else frozenset(reasons)


Body = tuple[str, bytes, frozenset[Reason]]


@st.composite
def bodies(draw: st.DrawFn, tenant: str, device: str, *, max_bytes: int, label: str | None = None) -> Body:
    """(label, raw, reasons): a request envelope of `tenant`/`device` broken in one way (`label`, else any)."""
    obj = request_obj(tenant, device, draw(st.from_regex(r"[A-Za-z0-9]{1,12}", fullmatch=True)), draw(prompts))
    good = dumps(obj)
    label = label or draw(st.sampled_from(BODY_LABELS))
    raw, reasons = _BODY_MAKERS[label](draw, obj, good, max_bytes)
    return label, raw, _fit(raw, reasons, max_bytes)


MakerResult = tuple[bytes, set[Reason]]
Maker = Callable[[st.DrawFn, dict[str, Any], bytes, int], MakerResult]


def _truncated(draw: st.DrawFn, obj: dict[str, Any], good: bytes, max_bytes: int) -> MakerResult:
    return good[: draw(st.integers(0, len(good) - 1))], {R.INVALID_JSON, R.INVALID_UTF8}


def _huge(draw: st.DrawFn, obj: dict[str, Any], good: bytes, max_bytes: int) -> MakerResult:
    # A string field blown past the byte cap (the codec must refuse on size, before parsing).
    path = draw(st.sampled_from([("data", "prompt"), ("data", "request_id"), ("source",), ("tenant",)]))
    size = draw(st.integers(max_bytes, 2 * max_bytes))
    return dumps(_set(obj, path, draw(st.sampled_from("x\u00e9\u4e2d")) * size)), {R.OVERSIZE}


def _long_field(draw: st.DrawFn, obj: dict[str, Any], good: bytes, max_bytes: int) -> MakerResult:
    # Within the byte cap but over the field's own limit.
    path, low = draw(st.sampled_from([(("data", "request_id"), 65), (("id",), 65), (("tenant",), 64),
                                      (("source",), 257), (("type",), 129)]))
    value = "a" * draw(st.integers(low, low + 200))
    return dumps(_set(obj, path, value)), {R.UNKNOWN_TYPE if path == ("type",) else R.SCHEMA_VIOLATION}


def _deep(draw: st.DrawFn, obj: dict[str, Any], good: bytes, max_bytes: int) -> MakerResult:
    # Nesting past every parser's recursion limit, or just deep: in a field, as an extra key, at the top, or in
    # an old-version field that the upcaster re-serialises.
    depth = draw(st.integers(1, 20_000) | st.sampled_from([999, 1000, 3000]))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    nest = opener * depth + "1" + closer * depth
    where = draw(st.sampled_from(["prompt", "extra", "top", "v1"]))
    if where == "top":
        return nest.encode(), {R.INVALID_JSON, R.NOT_AN_OBJECT if opener == "[" else R.UNKNOWN_TYPE}
    if where == "v1":
        obj = _set(_set(obj, ("schema_version",), 1), ("data", "max_new_tokens"), "@NEST@")
        obj["data"].pop("max_tokens", None)
        obj["data"].pop("tags", None)
    else:
        obj = _set(obj, ("data", "prompt") if where == "prompt" else ("data", "extra"), "@NEST@")
    return dumps(obj).replace(b'"@NEST@"', nest.encode()), {R.INVALID_JSON, R.SCHEMA_VIOLATION}


def _wrong_type(draw: st.DrawFn, obj: dict[str, Any], good: bytes, max_bytes: int) -> MakerResult:
    path = draw(st.sampled_from(sorted(FIELD_TYPES)))
    return dumps(_set(obj, path, draw(_wrong_for(FIELD_TYPES[path])))), {R.SCHEMA_VIOLATION}


def _wrong_envelope_type(draw: st.DrawFn, obj: dict[str, Any], good: bytes, max_bytes: int) -> MakerResult:
    value = draw(json_values.filter(lambda v: v != obj["type"]))
    if isinstance(value, str) and value.startswith("ebrain."):  # another known type: data fails its schema
        return dumps(_set(obj, ("type",), value)), {R.UNKNOWN_TYPE, R.SCHEMA_VIOLATION}
    return dumps(_set(obj, ("type",), value)), {R.UNKNOWN_TYPE}


def _invalid_utf8(draw: st.DrawFn, obj: dict[str, Any], good: bytes, max_bytes: int) -> MakerResult:
    at = draw(st.integers(0, len(good)))
    return good[:at] + draw(st.sampled_from(BAD_UTF8)) + good[at:], {R.INVALID_UTF8}


def _non_finite(draw: st.DrawFn, obj: dict[str, Any], good: bytes, max_bytes: int) -> MakerResult:
    path = draw(st.sampled_from([("data", "temperature"), ("data", "max_tokens"), ("schema_version",)]))
    constant = draw(st.sampled_from(NON_FINITE))
    return dumps(_set(obj, path, "@C@")).replace(b'"@C@"', constant.encode()), {R.INVALID_JSON}


def _schema_version(draw: st.DrawFn, obj: dict[str, Any], good: bytes, max_bytes: int) -> MakerResult:
    version = draw(st.integers(-(2**63), 0) | st.integers(3, 2**63) | st.sampled_from(["2", 2.0, True, None, [2]]))
    unsupported = isinstance(version, int) and not isinstance(version, bool)
    return dumps(_set(obj, ("schema_version",), version)), {
        R.UNSUPPORTED_VERSION if unsupported else R.SCHEMA_VIOLATION}


def _not_an_object(draw: st.DrawFn, obj: dict[str, Any], good: bytes, max_bytes: int) -> MakerResult:
    value = draw(json_values.filter(lambda v: not isinstance(v, dict)) | st.just([obj]))
    return dumps(value), {R.NOT_AN_OBJECT}


def _missing(draw: st.DrawFn, obj: dict[str, Any], good: bytes, max_bytes: int) -> MakerResult:
    path = draw(st.sampled_from(REQUIRED))
    return dumps(_drop(obj, path)), {R.UNKNOWN_TYPE if path == ("type",) else R.SCHEMA_VIOLATION}


def _extra(draw: st.DrawFn, obj: dict[str, Any], good: bytes, max_bytes: int) -> MakerResult:
    where = draw(st.sampled_from([(), ("data",)]))
    key = draw(st.text(min_size=1, max_size=10).filter(lambda k: k not in obj and k not in obj["data"]))
    return dumps(_set(obj, (*where, key), draw(json_values))), {R.SCHEMA_VIOLATION}


def _garbage(draw: st.DrawFn, obj: dict[str, Any], good: bytes, max_bytes: int) -> MakerResult:
    raw = draw(st.binary(max_size=64))
    return raw, {R.INVALID_JSON, R.INVALID_UTF8, R.NOT_AN_OBJECT, R.UNKNOWN_TYPE}  # b"{}" has no type


_BODY_MAKERS: dict[str, Maker] = {
    "truncated": _truncated, "huge": _huge, "long_field": _long_field, "deep": _deep, "wrong_type": _wrong_type,
    "wrong_envelope_type": _wrong_envelope_type, "invalid_utf8": _invalid_utf8, "non_finite": _non_finite,
    "schema_version": _schema_version, "not_an_object": _not_an_object, "missing": _missing, "extra": _extra,
    "garbage": _garbage,
}
BODY_LABELS = sorted(_BODY_MAKERS)
TOPIC_LABELS = ["forged_tenant", "forged_device", "wrong_kind", "bad_topic"]


@st.composite
def uplink_cases(draw: st.DrawFn, tenant: str, device: str, *, max_bytes: int,
                 registry: frozenset[str] | None = None) -> Case:
    """A malformed uplink for the gateway on `tenant`/`device`'s request topic (or a forged/foreign one).

    With `registry` (the gateway's known tenants, which must hold `tenant`), a stranger tenant's topic is
    refused as unknown_tenant whatever its body.
    """
    topic = mqtt_uplink(tenant, device, "request")
    label = draw(st.sampled_from(BODY_LABELS + TOPIC_LABELS + (["unknown_tenant"] if registry is not None else [])))
    if label in BODY_LABELS:
        label, raw, reasons = draw(bodies(tenant, device, max_bytes=max_bytes, label=label))
        return Case(label, topic, raw, reasons)
    if label in ("forged_tenant", "forged_device"):  # the envelope claims another tenant or device than its topic
        who = label.removeprefix("forged_")
        other = draw(names.filter(lambda n: n != (tenant if who == "tenant" else device)))
        obj = request_obj(tenant, device, "forged", "forged")
        return Case(label, topic, dumps(_set(obj, (who,), other)), frozenset({R.TOPIC_MISMATCH}))
    if label == "wrong_kind":  # a valid telemetry envelope on the request topic
        env = make(Telemetry(model_id="m", model_version="1", uptime_s=1.0), tenant=tenant, device=device)
        return Case(label, topic, encode(env), frozenset({R.TOPIC_MISMATCH}))
    if label == "unknown_tenant":
        stranger = draw(names.filter(lambda n: registry is not None and n not in registry))
        obj = request_obj(stranger, device, "stranger", "who am I")
        return Case(label, mqtt_uplink(stranger, device, "request"), dumps(obj), frozenset({R.UNKNOWN_TENANT}))
    bad = draw(st.sampled_from([f"ebrain/{tenant.upper()}X/{device}/request", f"ebrain/{tenant}/{device}/bogus",
                                f"ebrain/{tenant}/-{device}/request", f"ebrain/{tenant}/{device}/model_update",
                                f"ebrain/{tenant}/{device}/down"]))
    return Case("bad_topic", bad, dumps(request_obj(tenant, device, "t", "t")), frozenset({R.BAD_TOPIC}))


def draw_cases(strategy: st.SearchStrategy[Any], n: int) -> list[Any]:
    """`n` examples of `strategy`, reproducibly (derandomized): a batch generator for the live tests."""
    out: list[Any] = []

    @settings(max_examples=n, derandomize=True, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(example: Any) -> None:
        out.append(example)

    collect()
    return out[:n]
