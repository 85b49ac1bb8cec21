"""Prometheus metrics of the cloud worker: `ebrain_cloud_<what>_<unit>` in the default registry."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
BACKEND_REQUESTS = Counter(
    "ebrain_cloud_backend_requests_total",
    "Backend attempts by backend and outcome (ok, overloaded, timeout, unavailable, invalid).",
    ["backend", "outcome"],
)
BREAKER_OPEN = Gauge(
    "ebrain_cloud_backend_circuit_open",
    "1 while a backend's circuit breaker is open (requests skip it until the cooldown ends).",
    ["backend"],
)
BACKEND_KV_CACHE = Gauge(
    "ebrain_cloud_backend_kv_cache_usage_ratio", "KV-cache usage scraped from the backend's /metrics.", ["backend"]
)
BACKEND_WAITING = Gauge(
    "ebrain_cloud_backend_waiting_requests", "Requests waiting in the backend, scraped from /metrics.", ["backend"]
)
ROUTES = Counter(
    "ebrain_cloud_results_total",
    "Results by route (cloud, cache) and status (ok, deferred, failed, rejected).",
    ["route", "status"],
)
CACHE_LOOKUPS = Counter(
    "ebrain_cloud_cache_lookups_total",
    "Cache lookups by outcome (exact_hit, semantic_hit, guarded, miss, error).",
    ["outcome"],
)
CACHE_SEMANTIC = Gauge(
    "ebrain_cloud_cache_semantic_enabled",
    "1 when the cache runs semantic lookups (Redis 8 vector sets), 0 when it runs as an exact cache.",
)
RATE_LIMITED = Counter(
    "ebrain_cloud_rate_limited_total", "Requests rejected by a rate limit, by scope (tenant, device).", ["scope"]
)
RATELIMIT_ERRORS = Counter(
    "ebrain_cloud_ratelimit_errors_total",
    "Rate-limit checks that could not reach Redis, by the policy applied (open, closed).",
    ["policy"],
)
RETRY_TOPIC = Counter(
    "ebrain_cloud_retry_topic_total",
    "Requests put on (deferred) or taken from (retried) the retry topic.",
    ["action"],
)
REPLAYS = Counter(
    "ebrain_cloud_replays_total", "Redelivered requests answered from the stored reply instead of re-run."
)
