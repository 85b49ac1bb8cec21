"""Every component's /metrics during a real end-to-end run (separate processes, as on a laptop): the series the
dashboards and alerts use exist, and the ones a request passes through move.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ebrain.config import KafkaSettings, MqttSettings
from ebrain.models.tiny import write_tiny_llama
from ebrain.observability.localfleet import FleetConfig, run_fleet, total

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
HAS_DATA = importlib.util.find_spec("presidio_analyzer") is not None

# Series each component must expose from its start (gauges, label-less counters, histograms).
ALWAYS = {
    "gateway": ["ebrain_gateway_uplink_inflight_messages", "ebrain_gateway_kafka_produce_seconds_count",
                "ebrain_mqtt_connects_total"],
    "cloud": ["ebrain_cloud_inference_seconds_count", "ebrain_cloud_duplicates_total"],
    "ingest": ["ebrain_ingest_records_total", "ebrain_ingest_batch_seconds_count"],
    "edge-0": ["ebrain_edge_pending_escalations", "ebrain_edge_queue_depth", "ebrain_edge_spool_entries",
             "ebrain_edge_inference_seconds_count"],
}
# (component, series, labels) that must grow between the first and the last scrape.
MOVES = [
    ("gateway", "ebrain_gateway_uplink_messages_total", {"kind": "escalation", "outcome": "produced"}),
    ("gateway", "ebrain_gateway_uplink_messages_total", {"kind": "result", "outcome": "produced"}),
    ("gateway", "ebrain_gateway_downlink_messages_total", {"outcome": "published"}),
    ("gateway", "ebrain_gateway_kafka_produce_seconds_count", {}),
    ("gateway", "ebrain_gateway_bytes_total", {"direction": "uplink"}),
    ("cloud", "ebrain_cloud_requests_total", {"kind": "escalation", "outcome": "ok"}),
    ("cloud", "ebrain_cloud_inference_seconds_count", {}),
    ("edge-0", "ebrain_edge_requests_total", {"route": "local"}),
    ("edge-0", "ebrain_edge_requests_total", {"route": "cloud"}),
    ("edge-0", "ebrain_edge_escalations_total", {}),
    ("edge-0", "ebrain_edge_request_seconds_count", {"route": "cloud"}),
    ("edge-0", "ebrain_edge_inference_seconds_count", {}),
]
MOVES_INGEST = [
    ("ingest", "ebrain_ingest_messages_total", {}),
    ("ingest", "ebrain_ingest_batch_seconds_count", {}),
]


@pytest.mark.timeout(240)
async def test_every_component_exports_its_series_and_they_move(
    mqtt_settings: MqttSettings, kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    model = write_tiny_llama(tmp_path / "tiny.gguf")
    run = await run_fleet(FleetConfig(kafka_bootstrap=kafka_settings.bootstrap, model=model, work_dir=tmp_path,
                                      devices=1, requests=4, ingest=HAS_DATA, sample_every_s=0.5))
    assert len(run.outcomes) == 4
    assert {o["route"] for o in run.outcomes} == {"local", "cloud"}, run.outcomes
    for component, names in ALWAYS.items():
        if component not in run.ports:
            continue
        for name in names:
            assert any(k.split("{", 1)[0] == name for k in run.last[component]), f"{component}: no {name}"
    for component, name, labels in MOVES + (MOVES_INGEST if HAS_DATA else []):
        before = total(run.first.get(component, {}), name, **labels)
        after = total(run.last[component], name, **labels)
        assert after > before, f"{component}: {name}{labels} did not move ({before} -> {after})"
    assert total(run.last["edge-0"], "ebrain_edge_rss_bytes") > 10e6
    assert {c for _, c, _ in run.series} == set(run.ports)  # sampled during the run, every component
