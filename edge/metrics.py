"""Edge Prometheus metrics: ebrain_edge_<what>_<unit>."""

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("ebrain_edge_requests_total", "Requests finished on this device", ["route", "status"])
ESCALATIONS = Counter("ebrain_edge_escalations_total", "Requests escalated to the cloud", ["reason"])
INFERENCE = Histogram("ebrain_edge_inference_seconds", "Local inference time")
E2E = Histogram(
    "ebrain_edge_request_seconds", "Request to final answer, as the device saw it", ["route"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
PENDING = Gauge("ebrain_edge_pending_escalations", "Escalations waiting for a cloud reply")
DUPLICATE_REPLIES = Counter("ebrain_edge_duplicate_replies_total", "Cloud replies seen twice or for unknown ids")
BAD_DOWNLINK = Counter("ebrain_edge_bad_downlink_total", "Downlink messages refused", ["reason"])
SPOOL_IO_ERRORS = Counter("ebrain_edge_spool_io_errors_total",
                          "Messages the spool could not write (disk full, I/O error); their work was refused")
REJECTED = Counter("ebrain_edge_rejected_total", "Requests refused at once, with a published reply", ["reason"])
TOKENS_PER_S = Gauge("ebrain_edge_tokens_per_second", "Generation rate over the last telemetry interval")
QUEUE_DEPTH = Gauge("ebrain_edge_queue_depth", "Requests admitted by the local engine and not finished")
RSS = Gauge("ebrain_edge_rss_bytes", "Resident memory of the agent process")
MODEL = Gauge("ebrain_edge_model_info", "The model serving now (value 1)", ["model_id", "model_version"])
