"""The demo's pure parts: Prometheus digest, the dashboard's fold, the report's series, SVG plots and HTML."""

from __future__ import annotations

import importlib.util
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from rich.console import Console

from ebrain import demo
from ebrain.dashboard.core import DemoState, fold
from ebrain.dashboard.digest import deadletters, digest
from ebrain.dashboard.view import Board, render
from ebrain.report import series, svg
from ebrain.report.html import build_report, save_report


def _outcome(t: float, device: str, n: int, route: str, e2e_ms: float, status: str = "ok",
             escalation_reason: str | None = None, text: str = "an answer") -> dict[str, Any]:
    return {"kind": "outcome", "t": t, "device": device, "request_id": f"{device}-{n}", "route": route,
            "status": status, "e2e_ms": e2e_ms, "reason": "r", "text": text,
            "escalation_reason": escalation_reason if escalation_reason else (None if route == "local" else "tag")}


def _exposition() -> str:
    registry = CollectorRegistry()
    lookups = Counter("ebrain_cloud_cache_lookups_total", "x", ["outcome"], registry=registry)
    lookups.labels("exact_hit").inc(2)
    lookups.labels("semantic_hit").inc(1)
    lookups.labels("miss").inc(5)
    Counter("ebrain_cloud_deadletters_total", "x", ["reason"], registry=registry).labels("invalid").inc(3)
    gateway = Counter("ebrain_gateway_deadletters_total", "x", ["reason"], registry=registry)
    gateway.labels("too_big").inc(1)
    gateway.labels("unknown_tenant").inc(6)
    Gauge("ebrain_edge_spool_entries", "x", registry=registry).set(7)
    Counter("ebrain_unrelated_total", "x", registry=registry).inc(100)
    return generate_latest(registry).decode()


def test_digest_sums_the_series_of_interest_over_labels() -> None:
    values = digest(_exposition())
    assert values["cache_lookups"] == 8
    assert values["cache_hits"] == 3  # exact and semantic hits, not misses
    assert values["spool"] == 7
    assert deadletters(values) == 4
    assert values["gateway_foreign"] == 6  # another tenant's traffic, refused: not a fault of this fleet
    assert "ingest_records" not in values  # absent series stay absent (not 0: that process does not count it)
    assert not any("unrelated" in k for k in values)


def test_fold_counts_routes_once_per_request_and_keeps_latencies() -> None:
    events = [
        {"kind": "step", "t": 0.0, "name": "model fetch", "phase": "start"},
        {"kind": "step", "t": 2.5, "name": "model fetch", "phase": "end"},
        _outcome(3.0, "edge-0", 0, "local", 800),
        _outcome(4.0, "edge-0", 1, "cloud", 9000),
        _outcome(4.5, "edge-0", 1, "cloud", 9100),  # a redelivered outcome: counted as a duplicate only
        _outcome(5.0, "edge-1", 0, "cache", 20),
        _outcome(6.0, "edge-1", 1, "cloud", 0, status="failed"),
    ]
    state = fold(events, expected=4)
    assert state.steps == [("model fetch", 2.5)]
    assert state.answered == 4
    assert state.duplicates == 1
    assert (state.route_count("local"), state.route_count("cloud"), state.route_count("cache")) == (1, 1, 1)
    assert state.devices["edge-1"].failed == 1
    assert state.devices["edge-0"].done == 2
    assert state.latency(50, "cloud") == 9000
    assert state.latency(95) == 9000
    assert state.latency(25) == 0  # like the summary's p50/p95: over every finished request, failed ones too
    assert state.requests_per_s(window_s=10.0) == 4 / 6.0


def test_scrapes_give_rates_and_a_restart_gives_none() -> None:
    state = DemoState()
    for t, uplink in ((1.0, 10.0), (3.0, 30.0)):
        state.apply({"kind": "scrape", "t": t, "name": "gateway", "values": {"gateway_uplink": uplink}})
    assert state.procs["gateway"].msgs_per_s == 10.0
    state.apply({"kind": "proc", "t": 3.5, "name": "gateway", "state": "restarting"})
    state.apply({"kind": "scrape", "t": 4.0, "name": "gateway", "values": {"gateway_uplink": 2.0}})
    assert state.procs["gateway"].msgs_per_s == 10.0  # the counter went back to 0: that interval has no rate
    assert state.procs["gateway"].restarts == 1
    state.apply({"kind": "scrape", "t": 4.0, "name": "cloud", "values": {"cloud_deadletters": 2.0}})
    state.apply({"kind": "scrape", "t": 4.0, "name": "edge-0", "values": {"spool": 3.0}})
    assert state.deadletters() == 2
    assert state.procs["edge-0"].msgs_per_s is None  # a spool depth is not a message count
    assert state.device_metric("edge-0", "spool") == 3
    state.apply({"kind": "scrape", "t": 5.0, "name": "edge-0", "values": {"spool": 1.0, "pending": 1.0}})
    state.apply({"kind": "proc", "t": 6.0, "name": "edge-0", "state": "exited", "rc": 0})
    assert state.device_metric("edge-0", "pending") is None  # what was waiting at the last scrape is stale now
    assert state.device_metric("edge-0", "spool") == 1  # what it left in its spool is not


def _events() -> list[dict[str, Any]]:
    return [
        {"kind": "proc", "t": 0.5, "name": "gateway", "state": "ready"},
        _outcome(1.0, "edge-0", 0, "local", 700),
        _outcome(2.0, "edge-0", 1, "cloud", 8000),
        _outcome(2.5, "edge-1", 0, "local", 900, text="<script>alert(1)</script>"),
        _outcome(12.0, "edge-1", 1, "cache", 15),
        {"kind": "scrape", "t": 5.0, "name": "cloud", "values": {"cache_lookups": 2.0, "cache_hits": 1.0}},
        {"kind": "scrape", "t": 5.0, "name": "gateway", "values": {"gateway_uplink": 4.0}},
        {"kind": "scrape", "t": 7.0, "name": "gateway", "values": {"gateway_uplink": 10.0}},
    ]


def test_series_bucket_throughput_escalation_and_cache() -> None:
    events = _events()
    assert series.latencies_by_route(events) == {"local": [700.0, 900.0], "cloud": [8000.0], "cache": [15.0]}
    width = series.bucket_width(events, buckets=5)
    assert width == 3.0  # 11 s of finished requests in about 5 pieces
    assert series.throughput(events, width) == [(1.5, 1.0), (4.5, 0.0), (7.5, 0.0), (10.5, 0.0), (13.5, 1 / 3)]
    assert series.escalation_rate(events, width) == [(1.5, 1 / 3), (13.5, 1.0)]
    assert series.cumulative_escalation_rate(events)[-1] == (12.0, 0.5)
    rates = series.cache_hit_rate(events)
    assert rates["devices"] == [(2.0, 0.0), (12.0, 0.5)]
    assert rates["cloud worker"] == [(5.0, 0.5)]
    assert series.message_rate(events, "gateway", ("gateway_uplink",)) == [(7.0, 3.0)]


def test_svg_plots_are_well_formed_and_cover_their_data() -> None:
    for chart in (svg.line_chart("t", {"a": [(0, 1), (10, 3)]}, "x", "y"), svg.bar_chart("b", [("x", 0.5)], "y"),
                  svg.histogram("h", [1.0, 2.0, 2.0, 50.0], "ms"), svg.histogram("empty", [], "ms")):
        root = ET.fromstring(chart)
        assert root.tag.endswith("svg")
    ticks = svg.nice_ticks(3.0, 97.0)
    assert ticks[0] <= 3.0
    assert ticks[-1] >= 97.0
    assert svg.nice_ticks(0.0, 3.0, integer=True) == [0.0, 1.0, 2.0, 3.0]  # request counts: no 0.75 requests
    assert len(ET.fromstring(svg.histogram("h", [1.0, 2.0, 2.0, 50.0], "ms")).findall(
        "{http://www.w3.org/2000/svg}rect")) == 12


def test_report_has_every_plot_and_escapes_answers(tmp_path: Path) -> None:
    events = [*_events(), {"kind": "flywheel", "t": 20.0, "escalation_rate_before": 0.6,
                           "escalation_rate_after": 0.3, "promoted": True}]
    summary = {"sent": 4, "lost": 0, "duplicates": 0, "answered_local": 2}
    html = build_report(events, summary)
    chunks = ["<svg" + chunk for chunk in html.split("<svg")[1:]]
    plots = [ET.fromstring(chunk[: chunk.index("</svg>") + 6]) for chunk in chunks]
    titles = [p.find("{http://www.w3.org/2000/svg}title").text for p in plots]  # type: ignore[union-attr]
    assert [t for t in titles if t and t.startswith("latency")] == [
        "latency, local (2 requests)", "latency, cloud (1 requests)", "latency, cache (1 requests)"]
    assert {"escalation rate over time", "cache hit rate (cumulative)", "throughput",
            "escalation rate, held-out workload"} <= set(titles)
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "lost 0" in html
    path = save_report(tmp_path / "reports", "20260101-000000", html, events)
    assert path.name == "demo-20260101-000000.html"
    assert path.read_text() == html
    lines = (tmp_path / "reports" / "demo-20260101-000000.events.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == events


def test_report_without_flywheel_or_requests_still_renders() -> None:
    html = build_report([], {"sent": 0, "lost": 0})
    assert html.count("<svg") == 4  # an empty latency histogram, escalation, cache, throughput
    assert "Flywheel" not in html


def test_board_records_events_and_prints_plain_lines() -> None:
    lines: list[str] = []
    board = Board(live=False, echo=lines.append)
    with board:
        board.expect(2)
        board.emit({"kind": "step", "name": "model fetch", "phase": "start"})
        board.emit(_outcome(0.0, "edge-0", 0, "local", 812) | {"t": 1.0})
        board.emit({"kind": "scrape", "name": "gateway", "values": {}})
        board.note("hello")
    assert lines[0] == "model fetch: ..."
    assert "edge-0" in lines[1]
    assert "812 ms" in lines[1]
    assert lines[2] == "hello"  # scrapes print nothing
    assert all("t" in e for e in board.events)
    assert board.state.answered == 1


def test_render_shows_devices_and_services() -> None:
    state = fold([{"kind": "proc", "t": 0.0, "name": "gateway", "state": "ready"},
                  {"kind": "proc", "t": 0.0, "name": "edge-0", "state": "running"},
                  {"kind": "step", "t": 0.0, "name": "requests", "phase": "start"},
                  _outcome(1.0, "edge-0", 0, "cloud", 9000),
                  {"kind": "scrape", "t": 1.0, "name": "edge-0", "values": {"spool": 2.0, "pending": 1.0}}],
                 expected=4)
    console = Console(file=io.StringIO(), width=160, record=True)
    console.print(render(state))
    text = console.export_text()
    assert "gateway" in text
    assert "edge-0" in text
    assert "1/4" in text
    assert "requests" in text


def test_a_missing_fleet_module_is_named_with_its_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    assert demo.missing_for_fleet() is None  # the dev install has every role
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "faststream" else real(name))
    message = demo.missing_for_fleet()
    assert message is not None
    assert "faststream" in message
    assert "pip install -e '.[cloud]'" in message


def test_a_missing_training_module_stops_the_flywheel_before_anything_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    assert demo.missing_for_flywheel() is None  # the dev install has the train extra
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name in ("torch", "trl") else real(name))
    message = demo.missing_for_flywheel()
    assert message is not None
    assert "torch, trl" in message
    assert "pip install -e '.[train]'" in message
    assert "make demo-flywheel" in message
