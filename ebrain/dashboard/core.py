"""The dashboard's state: a fold over demo events (pure: the standard library and ebrain.summary).

Events are JSON-ready dicts with `kind` and `t` (seconds since the demo started):
- step:     {"name", "phase": "start" | "end"}           a long step (model fetch, fleet start, training)
- proc:     {"name", "state": "starting" | "ready" | "exited" | "killed" | "restarting", "rc"?}
- outcome:  a device's outcome line ({"device", "request_id", "route", "status", "e2e_ms", ...})
- scrape:   {"name", "values": digest of its /metrics}  (see ebrain.dashboard.digest)
- note:     {"text"}                                     a line of progress (e.g. the flywheel's)
- flywheel: run_flywheel's summary
The same event list is what the HTML report is built from.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ebrain.summary import percentile

ROUTES = ("local", "cloud", "cache")
# The counters whose rate is a process's messages/s (each process exposes only its own).
_MESSAGE_COUNTERS = ("gateway_uplink", "gateway_downlink", "cloud_requests", "ingest_consumed", "edge_requests")


@dataclass
class Proc:
    """One fleet process as the dashboard shows it."""

    name: str
    state: str = "starting"
    restarts: int = 0
    rc: int | None = None
    msgs_per_s: float | None = None


@dataclass
class Tally:
    """One device's finished requests by route (ok) and failures."""

    local: int = 0
    cloud: int = 0
    cache: int = 0
    deferred: int = 0
    failed: int = 0

    @property
    def done(self) -> int:
        return self.local + self.cloud + self.cache + self.deferred + self.failed


@dataclass
class DemoState:
    """Everything the live view shows; `apply` folds one event in."""

    expected: int = 0
    now: float = 0.0
    step: str | None = None
    step_since: float = 0.0
    steps: list[tuple[str, float]] = field(default_factory=list)
    procs: dict[str, Proc] = field(default_factory=dict)
    devices: dict[str, Tally] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=lambda: {r: [] for r in ROUTES})  # answered (ok)
    e2e_all: list[float] = field(default_factory=list)  # every finished request, as the summary's p50/p95
    finished_at: list[float] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    duplicates: int = 0
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: deque[str] = field(default_factory=lambda: deque(maxlen=5))
    flywheel: dict[str, Any] | None = None
    _last_scrape: dict[str, tuple[float, float]] = field(default_factory=dict)

    def apply(self, event: dict[str, Any]) -> None:
        """Fold one event in; unknown kinds are ignored (newer producers, older views)."""
        self.now = max(self.now, float(event.get("t", self.now)))
        handler = _HANDLERS.get(str(event.get("kind")))
        if handler is not None:
            handler(self, event)

    # Derived numbers -------------------------------------------------------------------------------------------
    @property
    def answered(self) -> int:
        return len(self.seen)

    def route_count(self, route: str) -> int:
        return sum(getattr(t, route) for t in self.devices.values())

    def requests_per_s(self, window_s: float = 10.0) -> float:
        """Finished requests per second over the last `window_s` (or since the first one, if sooner)."""
        if not self.finished_at:
            return 0.0
        since = max(self.now - window_s, 0.0)
        recent = [t for t in self.finished_at if t >= since]
        span = max(self.now - since, 1e-3)
        return len(recent) / span

    def latency(self, q: float, route: str | None = None) -> float:
        """Percentile of the answered requests of `route`, or of every finished request (the summary's)."""
        return percentile(self.latencies[route] if route else self.e2e_all, q)

    def total(self, key: str) -> float:
        """A digest value summed over every process's latest scrape."""
        return sum(values.get(key, 0.0) for values in self.metrics.values())

    def deadletters(self) -> float:
        return self.total("gateway_deadletters") + self.total("cloud_deadletters")

    def device_metric(self, device: str, key: str) -> float | None:
        return self.metrics.get(device, {}).get(key)


def _step(state: DemoState, event: dict[str, Any]) -> None:
    if event.get("phase") == "start":
        state.step, state.step_since = str(event["name"]), state.now
    elif state.step is not None and state.step == event.get("name"):
        state.steps.append((state.step, round(state.now - state.step_since, 1)))
        state.step = None


def _proc(state: DemoState, event: dict[str, Any]) -> None:
    name = str(event["name"])
    proc = state.procs.setdefault(name, Proc(name))
    new = str(event["state"])
    if new == "restarting":
        proc.restarts += 1
    proc.state, proc.rc = new, event.get("rc")
    if new in {"exited", "killed", "stopped"}:
        # Its last scrape predates the exit: a rate or an escalation still waiting then is not one now.
        proc.msgs_per_s = None
        state.metrics.get(name, {}).pop("pending", None)


def _outcome(state: DemoState, event: dict[str, Any]) -> None:
    request_id = str(event["request_id"])
    if request_id in state.seen:
        state.duplicates += 1
        return
    state.seen.add(request_id)
    state.finished_at.append(state.now)
    state.e2e_all.append(float(event["e2e_ms"]))
    tally = state.devices.setdefault(str(event["device"]), Tally())
    route, status = str(event["route"]), str(event["status"])
    if status == "ok" and route in ROUTES:
        setattr(tally, route, getattr(tally, route) + 1)
        state.latencies[route].append(float(event["e2e_ms"]))
    elif status == "deferred":
        tally.deferred += 1
    else:
        tally.failed += 1


def _scrape(state: DemoState, event: dict[str, Any]) -> None:
    name, values = str(event["name"]), dict(event["values"])
    state.metrics[name] = values
    proc = state.procs.setdefault(name, Proc(name))
    if not any(k in values for k in _MESSAGE_COUNTERS):
        return  # nothing it counts is a message
    messages = sum(values.get(k, 0.0) for k in _MESSAGE_COUNTERS)
    last = state._last_scrape.get(name)
    state._last_scrape[name] = (state.now, messages)
    # A restarted process starts its counters at zero again: no rate for that interval.
    if last is not None and state.now > last[0] and messages >= last[1]:
        proc.msgs_per_s = (messages - last[1]) / (state.now - last[0])


def _note(state: DemoState, event: dict[str, Any]) -> None:
    state.notes.append(str(event["text"]))


def _flywheel(state: DemoState, event: dict[str, Any]) -> None:
    state.flywheel = {k: v for k, v in event.items() if k not in {"kind", "t"}}


_HANDLERS = {"step": _step, "proc": _proc, "outcome": _outcome, "scrape": _scrape, "note": _note,
             "flywheel": _flywheel}


def fold(events: list[dict[str, Any]], expected: int = 0) -> DemoState:
    """The state after `events`, in order."""
    state = DemoState(expected=expected)
    for event in events:
        state.apply(event)
    return state
