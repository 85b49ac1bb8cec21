"""Codec throughput: schemas.encode/decode (strict validation) against raw json.dumps/loads of the same bytes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import typer

from schemas import Escalation, InferenceRequest, decode, encode, make


def _rate(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def run(n: int = 20_000) -> dict[str, Any]:
    """Messages per second for a ~1 KB escalation, validated and raw, and their ratio."""
    request = InferenceRequest(request_id="bench-1", prompt="Explain MQTT QoS levels. " * 20, tags=("complex",))
    envelope = make(Escalation(request=request, reason="cloud_tag:complex", draft="QoS 0 is at most once. " * 8,
                               scores={"confidence": 0.4}), tenant="bench", device="dev-1")
    raw = encode(envelope)
    obj = json.loads(raw)
    decode_rate = _rate(lambda: decode(raw), n)
    encode_rate = _rate(lambda: encode(envelope), n)
    raw_loads = _rate(lambda: json.loads(raw), n)
    raw_dumps = _rate(lambda: json.dumps(obj).encode(), n)
    return {
        "bench": "codec",
        "message_bytes": len(raw),
        "n": n,
        "decode_msg_per_s": round(decode_rate),
        "raw_json_loads_msg_per_s": round(raw_loads),
        "decode_ratio": round(decode_rate / raw_loads, 3),
        "encode_msg_per_s": round(encode_rate),
        "raw_json_dumps_msg_per_s": round(raw_dumps),
        "encode_ratio": round(encode_rate / raw_dumps, 3),
    }


def register(app: typer.Typer) -> None:
    """Add `ebrain bench codec`."""

    @app.command("codec")
    def codec(n: int = typer.Option(20_000, min=100, help="Messages per measurement.")) -> None:
        """Schema encode/decode rate against raw json on the same ~1 KB message, with the ratio."""
        typer.echo(json.dumps(run(n)))
