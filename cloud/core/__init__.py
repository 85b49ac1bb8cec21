"""Pure cloud logic over schema objects: no broker, engine or clock imports beyond the standard library."""

from cloud.core.deadlines import backoff_s, deadline_at, remaining_s
from cloud.core.dedup import RecentIds
from cloud.core.replies import ROUTE, SOURCE, answered, expect_kind, failed, request_of

__all__ = [
    "ROUTE",
    "SOURCE",
    "RecentIds",
    "answered",
    "backoff_s",
    "deadline_at",
    "expect_kind",
    "failed",
    "remaining_s",
    "request_of",
]
