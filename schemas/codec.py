"""JSON codec with strict validation and a size cap. Decoding never raises anything but InvalidMessage."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError

from schemas.envelope import Envelope
from schemas.errors import InvalidMessage, Reason
from schemas.payloads import BY_TYPE, Payload
from schemas.upcast import upcast

MAX_MESSAGE_BYTES = 256 * 1024
# Envelope[X] once per payload type: subscripting a generic model on every message costs a typing lookup.
_ENVELOPES: dict[type[Payload], type[Envelope[Any]]] = {cls: Envelope[cls] for cls in BY_TYPE.values()}  # type: ignore[valid-type]


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def encode(envelope: Envelope[Any], *, max_bytes: int = MAX_MESSAGE_BYTES) -> bytes:
    """Serialize compactly; refuse (InvalidMessage) to produce something no peer would accept."""
    raw = envelope.model_dump_json().encode()
    if len(raw) > max_bytes:
        raise InvalidMessage(Reason.OVERSIZE, f"{len(raw)} bytes > {max_bytes}")
    return raw


def parse_json(raw: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> dict[str, Any]:
    """Bytes to a JSON object, checking size, UTF-8 and syntax (NaN and Infinity are refused)."""
    if len(raw) > max_bytes:
        raise InvalidMessage(Reason.OVERSIZE, f"{len(raw)} bytes > {max_bytes}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidMessage(Reason.INVALID_UTF8, str(exc)) from None
    try:
        obj = json.loads(text, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        raise InvalidMessage(Reason.INVALID_JSON, str(exc)[:200]) from None
    if not isinstance(obj, dict):
        raise InvalidMessage(Reason.NOT_AN_OBJECT, f"top level is {type(obj).__name__}")
    return obj


def from_dict(obj: dict[str, Any], *, raw: bytes | None = None) -> Envelope[Any]:
    """Validate a parsed object as an envelope of its declared type, upcasting old payload versions.

    `raw`, when given, is the JSON that `obj` was parsed from: reused when no upcast was needed.
    """
    type_ = obj.get("type")
    payload_cls = BY_TYPE.get(type_) if isinstance(type_, str) else None
    if payload_cls is None:
        raise InvalidMessage(Reason.UNKNOWN_TYPE, f"type {_safe(type_)} is not a message type")
    version = obj.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise InvalidMessage(Reason.SCHEMA_VIOLATION, "schema_version must be an integer")
    data = obj.get("data")
    if not isinstance(data, dict):
        raise InvalidMessage(Reason.SCHEMA_VIOLATION, "data must be an object")
    if raw is None or version != payload_cls.VERSION:
        current = {**obj, "data": upcast(payload_cls.TYPE, version, data), "schema_version": payload_cls.VERSION}
        raw = json.dumps(current).encode()
    return validate(raw, payload_cls)


def _envelope_model(payload_cls: type[Payload]) -> type[Envelope[Any]]:
    model = _ENVELOPES.get(payload_cls)
    return model if model is not None else Envelope[payload_cls]  # type: ignore[valid-type]


def validate(raw: bytes, payload_cls: type[Payload]) -> Envelope[Any]:
    """Validate JSON `raw` as Envelope[payload_cls] in strict JSON mode: "5" is not a number."""
    try:
        return _envelope_model(payload_cls).model_validate_json(raw, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(_safe_part(p) for p in first["loc"])
        raise InvalidMessage(Reason.SCHEMA_VIOLATION, f"{where}: {first['msg']}"[:300]) from None


# The first `"type":"..."` in the bytes: a guess at the envelope's type, only used to pick the model for one
# validation pass. A wrong guess (a nested "type" key, spacing, an escape) only costs the slow path: a message
# that validates as Envelope[X] has type X at the top level, because the envelope's validator checks it.
_TYPE_GUESS = re.compile(rb'"type":"([a-z.]{1,128})"')


def _fast(raw: bytes) -> Envelope[Any] | None:
    """One strict validation pass straight from bytes, for a current-version message; None if that fails."""
    guess = _TYPE_GUESS.search(raw)
    payload_cls = BY_TYPE.get(guess[1].decode()) if guess is not None else None
    if payload_cls is None:
        return None
    try:
        return _ENVELOPES[payload_cls].model_validate_json(raw, strict=True)
    except ValidationError:
        return None


# Refusal details are logged by every hop, so they never quote what the sender wrote: only values shaped like
# our own names (type names, field names, indexes) are shown; anything else (a canary e-mail, a key) is not.
_SAFE_NAME = re.compile(r"[a-z][a-z0-9_.]{0,63}")


def _safe(value: object) -> str:
    return repr(value) if isinstance(value, str) and _SAFE_NAME.fullmatch(value) else f"<{type(value).__name__}>"


def _safe_part(part: int | str) -> str:
    return str(part) if isinstance(part, int) or _SAFE_NAME.fullmatch(part) else "<field>"


def decode(raw: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Envelope[Any]:
    """Bytes to a validated, current-version envelope, or InvalidMessage with a reason code.

    Valid current-version messages are validated once, straight from bytes (the hot path of every hop);
    anything else takes the slow path, which parses step by step to name the reason or upcast.
    """
    if len(raw) > max_bytes:
        raise InvalidMessage(Reason.OVERSIZE, f"{len(raw)} bytes > {max_bytes}")
    envelope = _fast(raw)
    if envelope is not None:
        return envelope
    return from_dict(parse_json(raw, max_bytes=max_bytes), raw=raw)
