"""From one process's Prometheus exposition text to the few numbers the dashboard and the report show (pure)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

# A label filter: (label name, values, True: only those values / False: all but those values).
Filter = tuple[str, frozenset[str], bool]
_FOREIGN = ("reason", frozenset({"unknown_tenant"}))

# digest key -> (sample name, label filter; None = every sample of that name)
_SERIES: dict[str, tuple[str, Filter | None]] = {
    "gateway_uplink": ("ebrain_gateway_uplink_messages_total", None),
    "gateway_downlink": ("ebrain_gateway_downlink_messages_total", None),
    # Another tenant's traffic on a shared broker is refused (unknown_tenant): counted apart from real faults.
    "gateway_deadletters": ("ebrain_gateway_deadletters_total", (*_FOREIGN, False)),
    "gateway_foreign": ("ebrain_gateway_deadletters_total", (*_FOREIGN, True)),
    "cloud_deadletters": ("ebrain_cloud_deadletters_total", None),
    "cloud_requests": ("ebrain_cloud_requests_total", None),
    "cache_lookups": ("ebrain_cloud_cache_lookups_total", None),
    "cache_hits": ("ebrain_cloud_cache_lookups_total", ("outcome", frozenset({"exact_hit", "semantic_hit"}), True)),
    "edge_requests": ("ebrain_edge_requests_total", None),
    "spool": ("ebrain_edge_spool_entries", None),
    "spool_dropped": ("ebrain_edge_spool_dropped_total", None),
    "pending": ("ebrain_edge_pending_escalations", None),
    "ingest_consumed": ("ebrain_ingest_messages_total", None),
    "ingest_records": ("ebrain_ingest_records_total", None),
    "ingest_dropped": ("ebrain_ingest_dropped_total", None),
    "ingest_quarantined": ("ebrain_ingest_quarantined_total", None),
}
_BY_SAMPLE: dict[str, list[tuple[str, Filter | None]]] = {}
for _key, (_sample, _filter) in _SERIES.items():
    _BY_SAMPLE.setdefault(_sample, []).append((_key, _filter))


def digest(text: str) -> dict[str, float]:
    """Sum each series of interest over its labels; keys absent from `text` are absent from the result.

    Raises ValueError on text that is not Prometheus exposition format.
    """
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for key, label_filter in _BY_SAMPLE.get(sample.name, ()):
                if label_filter is not None:
                    label, values, keep = label_filter
                    if (sample.labels.get(label) in values) != keep:
                        continue
                out[key] = out.get(key, 0.0) + float(sample.value)
    return out


def deadletters(values: dict[str, float]) -> float:
    """Dead letters one process counted (gateway and cloud worker count their own)."""
    return values.get("gateway_deadletters", 0.0) + values.get("cloud_deadletters", 0.0)
