"""From the demo's recorded events to the numbers the report plots (pure)."""

from __future__ import annotations

import math
from typing import Any

from ebrain.dashboard.core import ROUTES

Point = tuple[float, float]
Events = list[dict[str, Any]]


def outcomes(events: Events) -> list[dict[str, Any]]:
    """Each request's first outcome, in arrival order (redeliveries dropped)."""
    seen: set[str] = set()
    out = []
    for event in events:
        if event.get("kind") == "outcome" and event["request_id"] not in seen:
            seen.add(event["request_id"])
            out.append(event)
    return out


def escalated(outcome: dict[str, Any]) -> bool:
    return outcome["route"] != "local" or bool(outcome.get("escalation_reason"))


def latencies_by_route(events: Events) -> dict[str, list[float]]:
    """End-to-end latency (ms) of the answered requests, per route that answered any."""
    out: dict[str, list[float]] = {r: [] for r in ROUTES}
    for o in outcomes(events):
        if o["status"] == "ok" and o["route"] in out:
            out[o["route"]].append(float(o["e2e_ms"]))
    return {route: values for route, values in out.items() if values}


def bucket_width(events: Events, buckets: int = 20) -> float:
    """Seconds per time bucket: the span of the finished requests in about `buckets` pieces (1 s at least)."""
    times = [float(o["t"]) for o in outcomes(events)]
    return max(1.0, math.ceil((max(times, default=0.0) - min(times, default=0.0)) / buckets))


def _buckets(events: Events, width: float) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for o in outcomes(events):
        out.setdefault(int(float(o["t"]) // width), []).append(o)
    return out


def throughput(events: Events, width: float) -> list[Point]:
    """Requests finished per second, per time bucket (x: the bucket's middle, seconds since start)."""
    buckets = _buckets(events, width)
    if not buckets:
        return []
    return [((i + 0.5) * width, len(buckets.get(i, ())) / width) for i in range(min(buckets), max(buckets) + 1)]


def escalation_rate(events: Events, width: float) -> list[Point]:
    """Share of the requests finished in each bucket that were escalated (buckets with none are left out)."""
    return [((i + 0.5) * width, sum(map(escalated, os)) / len(os)) for i, os in sorted(_buckets(events, width).items())]


def cumulative_escalation_rate(events: Events) -> list[Point]:
    out, count = [], 0
    for n, o in enumerate(outcomes(events), 1):
        count += escalated(o)
        out.append((float(o["t"]), count / n))
    return out


def cache_hit_rate(events: Events) -> dict[str, list[Point]]:
    """Cumulative cache hit rate: as devices saw it (cache answers / escalations) and as the cloud worker counted
    it (hits / lookups, from its /metrics)."""
    devices, escalations, hits = [], 0, 0
    for o in outcomes(events):
        if escalated(o):
            escalations += 1
            hits += o["route"] == "cache"
            devices.append((float(o["t"]), hits / escalations))
    worker = [(float(e["t"]), e["values"].get("cache_hits", 0.0) / e["values"]["cache_lookups"])
              for e in events if e.get("kind") == "scrape" and e["values"].get("cache_lookups")]
    return {name: pts for name, pts in (("devices", devices), ("cloud worker", worker)) if pts}


def message_rate(events: Events, name: str, keys: tuple[str, ...]) -> list[Point]:
    """Messages per second a process counted between consecutive scrapes (a restart's reset is skipped)."""
    out, last = [], None
    for e in events:
        if e.get("kind") != "scrape" or e["name"] != name:
            continue
        t, total = float(e["t"]), sum(e["values"].get(k, 0.0) for k in keys)
        if last is not None and t > last[0] and total >= last[1]:
            out.append((t, (total - last[1]) / (t - last[0])))
        last = (t, total)
    return out


def steps(events: Events) -> list[tuple[str, float]]:
    """Each finished step and its duration in seconds."""
    started: dict[str, float] = {}
    out = []
    for e in events:
        if e.get("kind") != "step":
            continue
        if e["phase"] == "start":
            started[e["name"]] = float(e["t"])
        elif e["name"] in started:
            out.append((str(e["name"]), round(float(e["t"]) - started.pop(e["name"]), 1)))
    return out


def process_history(events: Events) -> list[tuple[float, str, str]]:
    """(t, process, state) for every process state change."""
    return [(float(e["t"]), str(e["name"]), str(e["state"]) + (f" (rc {e['rc']})" if e.get("rc") is not None else ""))
            for e in events if e.get("kind") == "proc"]


def flywheel(events: Events) -> dict[str, Any] | None:
    """The flywheel round's summary, when one ran."""
    found = [e for e in events if e.get("kind") == "flywheel"]
    return found[-1] if found else None
