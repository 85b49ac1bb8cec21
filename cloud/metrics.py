"""Prometheus metrics of the cloud worker: `ebrain_cloud_<what>_<unit>` in the default registry."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "ebrain_cloud_requests_total",
    "Uplink messages handled, by payload kind and outcome (ok, failed, duplicate, invalid).",
    ["kind", "outcome"],
)
INFERENCE_SECONDS = Histogram(
    "ebrain_cloud_inference_seconds",
    "Time from taking a request to having its result, retries included.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
DEADLETTERS = Counter(
    "ebrain_cloud_deadletters_total",
    "Refused uplink messages sent to the dead-letter topic, by reason code.",
    ["reason"],
)
DUPLICATES = Counter(
    "ebrain_cloud_duplicates_total",
    "Redelivered messages (an envelope id already answered) skipped without a second reply.",
)
RETRIES = Counter(
    "ebrain_cloud_engine_retries_total",
    "Engine calls retried after a retryable error, by error type.",
    ["error"],
)
