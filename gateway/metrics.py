"""Prometheus series of the gateway (`ebrain_gateway_<what>_<unit>`)."""

from __future__ import annotations

from functools import cache

from prometheus_client import Counter, Gauge, Histogram

UPLINK_MESSAGES = Counter(
    "ebrain_gateway_uplink_messages_total",
    "Uplink MQTT messages acked after Kafka took them, by kind and outcome (produced, deadlettered)",
    ["kind", "outcome"],
)
DOWNLINK_MESSAGES = Counter(
    "ebrain_gateway_downlink_messages_total",
    "Downlink Kafka records handled, by kind and outcome (published, deadlettered)",
    ["kind", "outcome"],
)
DEADLETTERS = Counter("ebrain_gateway_deadletters_total", "Messages dead-lettered, by reason", ["reason"])
KAFKA_PRODUCE_SECONDS = Histogram(
    "ebrain_gateway_kafka_produce_seconds",
    "From handing a record to the producer until Kafka acknowledged it (acks=all)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RETRIES = Counter("ebrain_gateway_retries_total", "Retries after a transient failure, by operation", ["op"])
UPLINK_INFLIGHT = Gauge("ebrain_gateway_uplink_inflight_messages", "Uplink messages awaiting Kafka's ack")
BYTES = Counter(
    "ebrain_gateway_bytes_total", "Payload bytes bridged, by direction (uplink, downlink)", ["direction"]
)
KAFKA_ERRORS = Counter(
    "ebrain_gateway_kafka_errors_total", "Kafka operations that failed (then retried), by operation and error",
    ["op", "error"],
)
RATE_LIMITED = Counter(
    "ebrain_gateway_rate_limited_total",
    "Uplink messages over a token-bucket limit, by scope (device, tenant), kind and action (replied, dropped)",
    ["scope", "kind", "action"],
)
REJECT_REPLIES = Counter(
    "ebrain_gateway_reject_replies_total",
    "Reject replies to devices, by outcome (published, failed, overflow: the bounded reply queue was full)",
    ["outcome"],
)


# Labelled children looked up once: `labels()` per message was a measurable share of the uplink's CPU.
UPLINK_BYTES = BYTES.labels(direction="uplink")


@cache
def uplink_messages(kind: str, outcome: str) -> Counter:
    """The UPLINK_MESSAGES child (kinds and outcomes are small closed sets, so the cache stays small)."""
    return UPLINK_MESSAGES.labels(kind=kind, outcome=outcome)
