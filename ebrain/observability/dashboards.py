"""Grafana dashboards as code: `python -m ebrain.observability.dashboards deploy/grafana/dashboards` writes them.

The JSON under deploy/grafana/dashboards is generated from here and checked in (Grafana provisions it from
files); tests/test_observability.py fails when the files drift from this module or when a query names a series
that no component exports.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
_WIDTH, _HEIGHT = 12, 8


@dataclass(frozen=True)
class Panel:
    """One panel: a title, PromQL queries (expr, legend), a unit and a kind (timeseries or stat)."""

    title: str
    queries: tuple[tuple[str, str], ...]
    unit: str = "short"
    kind: str = "timeseries"
    description: str = ""


def _q(expr: str, legend: str = "") -> tuple[str, str]:
    return expr, legend


def _p95(metric: str, by: str = "") -> str:
    group = f"le, {by}" if by else "le"
    return f"histogram_quantile(0.95, sum by ({group}) (rate({metric}_bucket[5m])))"


FLEET = (
    Panel("Devices up", (_q('count(up{job="edge"} == 1)', "up"), _q('count(up{job="edge"} == 0)', "down")),
          kind="stat"),
    Panel("Requests finished by route", (_q("sum by (route, status) (rate(ebrain_edge_requests_total[5m]))",
                                            "{{route}} {{status}}"),), "reqps"),
    Panel("Escalations by reason", (_q("sum by (reason) (rate(ebrain_edge_escalations_total[5m]))", "{{reason}}"),),
          "reqps"),
    Panel("Request latency p95 as the device saw it", (_q(_p95("ebrain_edge_request_seconds", "route"),
                                                          "{{route}}"),), "s"),
    Panel("Local inference p95", (_q(_p95("ebrain_edge_inference_seconds"), "p95"),), "s"),
    Panel("Generation rate per device", (_q("ebrain_edge_tokens_per_second", "{{instance}}"),), "short"),
    Panel("Store-and-forward spool", (_q("sum(ebrain_edge_spool_entries)", "entries"),
                                      _q("sum by (reason) (rate(ebrain_edge_spool_dropped_total[5m]))",
                                         "dropped {{reason}}")), "short"),
    Panel("Pending escalations and engine queue", (_q("sum(ebrain_edge_pending_escalations)", "pending"),
                                                   _q("sum(ebrain_edge_queue_depth)", "queued"),
                                                   _q("sum by (reason) (rate(ebrain_edge_rejected_total[5m]))",
                                                      "rejected {{reason}}")), "short"),
    Panel("Resident memory per device (budget 2 GB)", (_q("ebrain_edge_rss_bytes", "{{instance}}"),), "bytes"),
    Panel("MQTT reconnects", (_q("sum by (job) (increase(ebrain_mqtt_connects_total[5m]))", "{{job}}"),), "short"),
)

GATEWAY = (
    Panel("Uplink by kind and outcome", (_q("sum by (kind, outcome) (rate(ebrain_gateway_uplink_messages_total[5m]))",
                                            "{{kind}} {{outcome}}"),), "mps"),
    Panel("Downlink by kind and outcome",
          (_q("sum by (kind, outcome) (rate(ebrain_gateway_downlink_messages_total[5m]))", "{{kind}} {{outcome}}"),),
          "mps"),
    Panel("Dead letters by reason", (_q("sum by (reason) (rate(ebrain_gateway_deadletters_total[5m]))",
                                        "{{reason}}"),), "mps"),
    Panel("Kafka produce latency p95 (acks=all)", (_q(_p95("ebrain_gateway_kafka_produce_seconds", "instance"),
                                                      "{{instance}}"),), "s"),
    Panel("Uplink in flight (MQTT received, Kafka not yet acked)",
          (_q("ebrain_gateway_uplink_inflight_messages", "{{instance}}"),), "short"),
    Panel("Bytes bridged", (_q("sum by (direction) (rate(ebrain_gateway_bytes_total[5m]))", "{{direction}}"),),
          "Bps"),
    Panel("Kafka errors and retries", (_q("sum by (op, error) (rate(ebrain_gateway_kafka_errors_total[5m]))",
                                          "{{op}} {{error}}"),
                                       _q("sum by (op) (rate(ebrain_gateway_retries_total[5m]))", "retry {{op}}")),
          "ops"),
    Panel("Rate limited", (_q("sum by (scope, action) (rate(ebrain_gateway_rate_limited_total[5m]))",
                              "{{scope}} {{action}}"),
                           _q("sum by (outcome) (rate(ebrain_gateway_reject_replies_total[5m]))",
                              "reject reply {{outcome}}")), "mps"),
)

CLOUD = (
    Panel("Results by route and status", (_q("sum by (route, status) (rate(ebrain_cloud_results_total[5m]))",
                                             "{{route}} {{status}}"),), "reqps"),
    Panel("Cache hit ratio", (_q('sum(rate(ebrain_cloud_cache_lookups_total{outcome=~".*_hit"}[5m])) / '
                                 "sum(rate(ebrain_cloud_cache_lookups_total[5m]))", "hit ratio"),), "percentunit"),
    Panel("Cache lookups by outcome", (_q("sum by (outcome) (rate(ebrain_cloud_cache_lookups_total[5m]))",
                                          "{{outcome}}"),), "ops"),
    Panel("Backend attempts by backend and outcome",
          (_q("sum by (backend, outcome) (rate(ebrain_cloud_backend_requests_total[5m]))",
              "{{backend}} {{outcome}}"),), "reqps"),
    Panel("Circuit breakers open", (_q("max by (backend) (ebrain_cloud_backend_circuit_open)", "{{backend}}"),)),
    Panel("Backend load (scraped by the router)",
          (_q("max by (backend) (ebrain_cloud_backend_kv_cache_usage_ratio)", "kv cache {{backend}}"),
           _q("max by (backend) (ebrain_cloud_backend_waiting_requests)", "waiting {{backend}}"))),
    Panel("vLLM queue (KEDA scales vLLM on this)", (_q("sum(vllm:num_requests_waiting)", "waiting"),
                                                    _q("sum(vllm:num_requests_running)", "running"))),
    Panel("Inference p95 (retries included)", (_q(_p95("ebrain_cloud_inference_seconds"), "p95"),), "s"),
    Panel("Consumer lag (KEDA scales workers on this)",
          (_q('sum by (consumergroup, topic) (kafka_consumergroup_lag{consumergroup=~"ebrain-cloud.*"})',
              "{{consumergroup}} {{topic}}"),)),
    Panel("Deferrals, replays, duplicates, rate limits",
          (_q("sum by (action) (rate(ebrain_cloud_retry_topic_total[5m]))", "retry topic {{action}}"),
           _q("sum(rate(ebrain_cloud_replays_total[5m]))", "replays"),
           _q("sum(rate(ebrain_cloud_duplicates_total[5m]))", "duplicates"),
           _q("sum by (scope) (rate(ebrain_cloud_rate_limited_total[5m]))", "rate limited {{scope}}"),
           _q("sum by (reason) (rate(ebrain_cloud_deadletters_total[5m]))", "dead letter {{reason}}")), "ops"),
)

DATA = (
    Panel("Consumed by topic and outcome", (_q("sum by (topic, outcome) (rate(ebrain_ingest_messages_total[5m]))",
                                               "{{topic}} {{outcome}}"),), "mps"),
    Panel("Records written", (_q("sum(rate(ebrain_ingest_records_total[5m]))", "records/s"),), "ops"),
    Panel("Dropped by reason", (_q("sum by (reason) (rate(ebrain_ingest_dropped_total[5m]))", "{{reason}}"),), "ops"),
    Panel("PII spans redacted by entity", (_q("sum by (entity) (rate(ebrain_ingest_pii_entities_total[5m]))",
                                              "{{entity}}"),), "ops"),
    Panel("Quarantined and join evictions",
          (_q("sum by (reason) (rate(ebrain_ingest_quarantined_total[5m]))", "quarantined {{reason}}"),
           _q("sum by (side, reason) (rate(ebrain_ingest_join_evictions_total[5m]))", "unjoined {{side}} {{reason}}")),
          "ops"),
    Panel("Batch commit p95", (_q(_p95("ebrain_ingest_batch_seconds"), "p95"),), "s"),
    Panel("Ingest consumer lag", (_q('sum by (topic) (kafka_consumergroup_lag{consumergroup="ebrain-ingest"})',
                                     "{{topic}}"),)),
)

TRAINING = (
    Panel("New training records per day", (_q("sum(increase(ebrain_ingest_records_total[1d]))", "records"),),
          kind="stat"),
    Panel("Records kept vs dropped (agreement = the edge already knew)",
          (_q("sum(increase(ebrain_ingest_records_total[1h]))", "kept"),
           _q("sum by (reason) (increase(ebrain_ingest_dropped_total[1h]))", "dropped {{reason}}"))),
    Panel("Model versions across the fleet", (_q("count by (model_id, model_version) (ebrain_edge_model_info)",
                                                 "{{model_id}} v{{model_version}}"),)),
    Panel("OTA rollout outcomes", (_q("sum by (outcome) (increase(ebrain_edge_model_updates_total[1h]))",
                                      "{{outcome}}"),)),
    Panel("Canary rollouts by verdict (alert: ModelRolloutRolledBack)",
          (_q("sum by (verdict) (increase(ebrain_trainer_rollouts_total[1d]))", "{{verdict}}"),)),
    Panel("Escalation rate (what distillation should bring down)",
          (_q('sum(rate(ebrain_edge_requests_total{route="cloud"}[1h])) / sum(rate(ebrain_edge_requests_total[1h]))',
              "escalated share"),), "percentunit"),
)

DASHBOARDS: dict[str, tuple[str, tuple[Panel, ...]]] = {
    "fleet": ("ebrain / Edge fleet", FLEET),
    "gateway": ("ebrain / Gateway", GATEWAY),
    "cloud": ("ebrain / Cloud routing and cache", CLOUD),
    "data": ("ebrain / Data ingestion", DATA),
    "training": ("ebrain / Training and rollouts", TRAINING),
}


def _panel(index: int, panel: Panel) -> dict[str, Any]:
    return {
        "id": index + 1,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"x": (index % 2) * _WIDTH, "y": (index // 2) * _HEIGHT, "w": _WIDTH, "h": _HEIGHT},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if panel.kind == "timeseries" else {},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(panel.queries)
        ],
    }


def dashboard(uid: str) -> dict[str, Any]:
    """The Grafana dashboard model (schemaVersion 39) for `uid` (a key of DASHBOARDS)."""
    title, panels = DASHBOARDS[uid]
    return {
        "uid": f"ebrain-{uid}",
        "title": title,
        "tags": ["ebrain"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "editable": True,
        "panels": [_panel(i, p) for i, p in enumerate(panels)],
    }


def render(uid: str) -> str:
    """The file text for one dashboard (stable: sorted keys, trailing newline)."""
    return json.dumps(dashboard(uid), indent=2, sort_keys=True) + "\n"


def write_all(out_dir: Path) -> list[Path]:
    """Write every dashboard to `out_dir/<uid>.json`; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for uid in DASHBOARDS:
        path = out_dir / f"{uid}.json"
        path.write_text(render(uid))
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "deploy/grafana/dashboards")):
        print(written)
