"""Prometheus metrics of ingestion: `ebrain_ingest_<what>_<unit>` in the default registry."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

MESSAGES = Counter(
    "ebrain_ingest_messages_total",
    "Kafka messages consumed, by topic and outcome (record, joined, waiting, invalid, skipped).",
    ["topic", "outcome"],
)
RECORDS = Counter("ebrain_ingest_records_total", "Training records written to the dataset.")
DROPPED = Counter("ebrain_ingest_dropped_total", "Records not written, by reason.", ["reason"])
QUARANTINED = Counter(
    "ebrain_ingest_quarantined_total", "Records that could not be scanned, kept apart, by reason.", ["reason"]
)
PII = Counter("ebrain_ingest_pii_entities_total", "PII spans replaced by placeholders, by entity.", ["entity"])
JOIN_EVICTIONS = Counter(
    "ebrain_ingest_join_evictions_total", "Escalations or answers that never met their partner.", ["side", "reason"]
)
BATCH_SECONDS = Histogram(
    "ebrain_ingest_batch_seconds",
    "Time to redact, curate and commit one batch.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
