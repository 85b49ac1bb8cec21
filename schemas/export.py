"""JSON Schema documents, one per message type, so devices in other languages can be built against them."""

from __future__ import annotations

from typing import Any

from schemas.envelope import Envelope
from schemas.payloads import PAYLOAD_TYPES


def json_schemas() -> dict[str, dict[str, Any]]:
    """Map of file name (`<type>.v<version>.schema.json`) to the envelope schema for that payload."""
    out: dict[str, dict[str, Any]] = {}
    for payload in PAYLOAD_TYPES:
        schema = Envelope[payload].model_json_schema()  # type: ignore[valid-type]
        schema["$id"] = f"https://enterprise-brain.dev/schemas/{payload.TYPE}.v{payload.VERSION}.json"
        schema["title"] = f"{payload.TYPE} v{payload.VERSION}"
        schema["properties"]["type"]["const"] = payload.TYPE
        schema["properties"]["schema_version"]["const"] = payload.VERSION
        out[f"{payload.TYPE}.v{payload.VERSION}.schema.json"] = schema
    return out
