"""Upcasters: pure functions that lift an old payload dict one version up, applied in a chain on read.

Register with `@upcaster(TYPE, from_version)`. Keep old samples in tests forever (tests/samples/).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schemas.errors import InvalidMessage, Reason
from schemas.payloads import BY_TYPE, InferenceRequest

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(type_: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register `fn` as the step from `from_version` to `from_version + 1` of payload `type_`."""

    def register(fn: Upcaster) -> Upcaster:
        _UPCASTERS[(type_, from_version)] = fn
        return fn

    return register


def upcast(type_: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
    """Lift `data` from `version` to the current version of `type_`, or raise InvalidMessage."""
    current = BY_TYPE[type_].VERSION
    if version > current or version < 1:
        raise InvalidMessage(Reason.UNSUPPORTED_VERSION, f"{type_} v{version} (this build reads <= v{current})")
    while version < current:
        step = _UPCASTERS.get((type_, version))
        if step is None:
            raise InvalidMessage(Reason.UNSUPPORTED_VERSION, f"no upcaster for {type_} v{version}")
        data = step(data)
        version += 1
    return data


@upcaster(InferenceRequest.TYPE, 1)
def _request_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in data.items() if k != "max_new_tokens"}
    if "max_new_tokens" in data:
        out["max_tokens"] = data["max_new_tokens"]
    out.setdefault("tags", [])
    return out
