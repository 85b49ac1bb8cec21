"""The single-file HTML report: `build_report(events, summary)` is pure; `save_report` writes it."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from ebrain.report import series, svg

MAX_ROWS = 500  # request rows listed in the report; the plots and the summary cover every request

_CSS = """body{font-family:sans-serif;margin:2em;color:#222;max-width:1200px}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px}td,th{padding:2px 10px;text-align:left;border-bottom:1px solid #eee}
.plots{display:flex;flex-wrap:wrap;gap:12px}.plot{border:1px solid #eee}
.ok{color:#2a7}.bad{color:#c33}.muted{color:#888}"""


def _table(rows: list[list[Any]], head: list[str] | None = None) -> str:
    out = ["<table>"]
    if head:
        out.append("<tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>")
    out += ["<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows]
    return "".join(out) + "</table>"


def _latency_plots(events: series.Events) -> list[str]:
    by_route = series.latencies_by_route(events)
    if not by_route:
        return [svg.histogram("end-to-end latency", [], "ms")]
    return [svg.histogram(f"latency, {route} ({len(v)} requests)", v, "end-to-end ms") for route, v in by_route.items()]


def _plots(events: series.Events) -> list[str]:
    width = series.bucket_width(events)
    rates = {"per bucket": series.escalation_rate(events, width),
             "cumulative": series.cumulative_escalation_rate(events)}
    throughput = {"requests answered": series.throughput(events, width),
                  "gateway messages": series.message_rate(events, "gateway",
                                                          ("gateway_uplink", "gateway_downlink"))}
    return [
        *_latency_plots(events),
        svg.line_chart("escalation rate over time", rates, "seconds since start", "share escalated", y_max=1.0),
        svg.line_chart("cache hit rate (cumulative)", series.cache_hit_rate(events), "seconds since start",
                       "hit rate", y_max=1.0),
        svg.line_chart("throughput", {k: v for k, v in throughput.items() if v}, "seconds since start",
                       "per second"),
    ]


def _flywheel(events: series.Events) -> str:
    round_ = series.flywheel(events)
    if round_ is None:
        return ""
    bars = [("before", float(round_.get("escalation_rate_before", 0.0))),
            ("after", float(round_.get("escalation_rate_after", 0.0)))]
    rows = [[k, v] for k, v in round_.items() if k not in {"kind", "t"}]
    return ("<h2>Flywheel round: held-out escalation rate before and after</h2><div class='plots'>"
            + svg.bar_chart("escalation rate, held-out workload", bars, "share escalated", y_max=1.0)
            + "</div>" + _table(rows, ["", "value"]))


def _requests(events: series.Events) -> str:
    rows = [[f"{float(o['t']):.1f}", o["device"], o["route"], o["status"], f"{float(o['e2e_ms']):.0f}",
             o.get("escalation_reason") or o.get("reason", ""), str(o.get("text", ""))[:80]]
            for o in series.outcomes(events)]
    more = f"<p class='muted'>{len(rows) - MAX_ROWS} more not listed</p>" if len(rows) > MAX_ROWS else ""
    return _table(rows[:MAX_ROWS], ["t (s)", "device", "route", "status", "e2e ms", "why", "answer"]) + more


def build_report(events: series.Events, summary: dict[str, Any], *, title: str = "enterprise-brain demo") -> str:
    """The whole report for a demo run: summary, plots (inline SVG), flywheel, steps, processes, requests."""
    lost = summary.get("lost")
    verdict = (f"<p class='{'ok' if lost == 0 else 'bad'}'>sent {summary.get('sent')}, "
               f"lost {lost}, duplicates {summary.get('duplicates')}</p>")
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{escape(title)}</h1>", verdict,
        "<h2>Summary</h2>", _table([[k, json.dumps(v) if isinstance(v, dict | list) else v]
                                    for k, v in summary.items()]),
        "<h2>Plots</h2><div class='plots'>", *_plots(events), "</div>",
        _flywheel(events),
        "<h2>Steps</h2>", _table([list(s) for s in series.steps(events)], ["step", "seconds"]),
        "<h2>Processes</h2>", _table([[f"{t:.1f}", n, s] for t, n, s in series.process_history(events)],
                                     ["t (s)", "process", "state"]),
        "<h2>Requests</h2>", _requests(events),
        "</body></html>",
    ]
    return "".join(parts)


def save_report(reports_dir: Path, stamp: str, html: str, events: series.Events) -> Path:
    """Write demo-<stamp>.html (and the events it was built from, as JSON lines beside it); return its path."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    path = reports_dir / f"demo-{stamp}.html"
    path.write_text(html, encoding="utf-8")
    with (reports_dir / f"demo-{stamp}.events.jsonl").open("w", encoding="utf-8") as out:
        out.writelines(json.dumps(e) + "\n" for e in events)
    return path
