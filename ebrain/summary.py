"""The demo's ledger and summary: pure functions over the outcome lines the devices print."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(sent: int, outcomes: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Count outcomes by route and status; `lost` is what was sent and never got a final outcome."""
    seen: dict[str, dict[str, Any]] = {}
    duplicates = 0
    for outcome in outcomes:
        if outcome["request_id"] in seen:
            duplicates += 1
            continue
        seen[outcome["request_id"]] = outcome
    ok = [o for o in seen.values() if o["status"] == "ok"]
    latencies = [float(o["e2e_ms"]) for o in seen.values()]
    by_route = {route: [float(o["e2e_ms"]) for o in ok if o["route"] == route] for route in ("local", "cloud")}
    return {
        "sent": sent,
        "answered_local": sum(1 for o in ok if o["route"] == "local"),
        "answered_cloud": sum(1 for o in ok if o["route"] == "cloud"),
        "answered_cache": sum(1 for o in ok if o["route"] == "cache"),
        "deferred": sum(1 for o in seen.values() if o["status"] == "deferred"),
        "failed": sum(1 for o in seen.values() if o["status"] in {"failed", "rejected"}),
        "lost": max(0, sent - len(seen)),
        "duplicates": duplicates,
        "p50_ms": round(percentile(latencies, 50), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
        "local_p50_ms": round(percentile(by_route["local"], 50), 1),
        "cloud_p50_ms": round(percentile(by_route["cloud"], 50), 1),
    }
