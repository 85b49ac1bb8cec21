"""`ebrain bench cloud` end to end against a stub backend and the test Redis 8 (fast), checking its JSON."""

from __future__ import annotations

import pytest

from bench.cloud import _run
from cloud.testing import StubServer

pytestmark = [pytest.mark.integration]


async def test_bench_reports_every_number(redis8_url: str) -> None:
    async with StubServer() as stub:
        result = await _run(stub.url, "stub", redis8_url, 50)
    assert result["backend_kind"] == "openai-compatible (not vLLM)"
    for key in ("cache_hit_p50_ms", "cache_hit_qps", "uncached_qps", "cache_speedup", "router_overhead_p50_ms",
                "batching_gain", "semantic_hit_p50_ms"):
        assert result[key] > 0 or key == "router_overhead_p50_ms", key
    assert result["cache_hit_p50_ms"] < 50
