"""Render docs/fleet-metrics.png from a real local run: `python docs/render_metrics.py [--devices 3 --requests 6]`.

Starts a private Mosquitto and Tansu (free ports, so nobody else's traffic is counted), then gateway, cloud worker,
ingest worker and N edge devices as processes (ebrain.observability.localfleet), scrapes every /metrics each
second, and plots the series the Grafana dashboards show. Needs matplotlib; the model defaults to SmolLM2-135M
(`ebrain models pull smollm2`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt

from ebrain.models import resolve_model
from ebrain.observability.localfleet import FleetConfig, FleetRun, run_fleet, total
from ebrain.stack import private

HERE = Path(__file__).resolve().parent


def _curve(run: FleetRun, prefix: str, name: str, **labels: str) -> tuple[list[float], list[float]]:
    """Time and value of `name` summed over components whose name starts with `prefix`; a component whose scrape
    missed a tick (a busy 2-core machine) keeps its last value rather than dropping out of the sum."""
    by_tick: dict[int, dict[str, float]] = defaultdict(dict)
    for t, component, samples in run.series:
        if component.startswith(prefix):
            by_tick[round(t)][component] = total(samples, name, **labels)
    last: dict[str, float] = {}
    xs, ys = [], []
    for tick in sorted(by_tick):
        last.update(by_tick[tick])
        xs.append(float(tick))
        ys.append(sum(last.values()))
    return xs, ys


def plot(run: FleetRun, out: Path, title: str) -> None:
    """Four panels: edge outcomes by route, gateway traffic, cloud answers and latency, data ingestion."""
    fig, axes = plt.subplots(2, 2, figsize=(12, 7), constrained_layout=True)
    panels = [
        ("Edge fleet: requests finished", [("edge-", "ebrain_edge_requests_total", {"route": r}, f"route={r}")
                                           for r in ("local", "cloud")]),
        ("Gateway: uplink messages produced to Kafka",
         [("gateway", "ebrain_gateway_uplink_messages_total", {"kind": k, "outcome": "produced"}, f"kind={k}")
          for k in ("escalation", "result", "telemetry")]
         + [("gateway", "ebrain_gateway_downlink_messages_total", {"outcome": "published"}, "downlink published")]),
        ("Cloud worker: escalations answered", [
            ("cloud", "ebrain_cloud_requests_total", {"kind": "escalation", "outcome": "ok"}, "answered ok"),
            ("edge-", "ebrain_edge_pending_escalations", {}, "pending at devices (gauge)")]),
        ("Data: ingestion", [("ingest", "ebrain_ingest_messages_total", {}, "messages consumed"),
                             ("ingest", "ebrain_ingest_records_total", {}, "records written"),
                             ("ingest", "ebrain_ingest_dropped_total", {}, "records dropped (any reason)")]),
    ]
    for ax, (panel_title, lines) in zip(axes.flat, panels, strict=True):
        for prefix, name, labels, legend in lines:
            xs, ys = _curve(run, prefix, name, **labels)
            if xs:
                ax.step(xs, ys, where="post", label=legend)
        ax.set_title(panel_title, fontsize=10)
        ax.set_xlabel("seconds since the servers were ready", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.savefig(out, dpi=110)


def main() -> None:
    """Run the fleet, save the PNG and a JSON summary next to it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=3)
    parser.add_argument("--requests", type=int, default=6)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--out", type=Path, default=HERE / "fleet-metrics.png")
    args = parser.parse_args()
    model = resolve_model(args.model, Path(os.environ.get("EBRAIN_STATE_DIR", ".ebrain")) / "models")
    with tempfile.TemporaryDirectory() as work:
        mqtt_port, kafka_port = private.free_port(), private.free_port()
        brokers = [private.start_mosquitto(Path(work), mqtt_port), private.start_tansu(Path(work), kafka_port)]
        try:
            config = FleetConfig(kafka_bootstrap=f"127.0.0.1:{kafka_port}", mqtt_port=mqtt_port, model=model,
                                 work_dir=Path(work), devices=args.devices, requests=args.requests, ingest=True,
                                 deadline_s=600, telemetry_interval_s=15)
            run = asyncio.run(run_fleet(config))
        finally:
            for proc in brokers:
                private.stop(proc)
    routes = {r: sum(1 for o in run.outcomes if o["route"] == r) for r in ("local", "cloud")}
    title = (f"enterprise-brain, local run: {args.devices} devices x {args.requests} requests on {model.name}; "
             f"{routes['local']} answered locally, {routes['cloud']} by the cloud (every point a /metrics scrape)")
    plot(run, args.out, title)
    dropped = {k: v for k, v in run.last.get("ingest", {}).items() if k.startswith("ebrain_ingest_dropped_total")}
    summary = {"outcomes": len(run.outcomes), **routes, "samples": len(run.series), "png": str(args.out),
               "ingest_dropped": dropped}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
