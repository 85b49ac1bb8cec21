"""`ebrain bench load`: a short sustained run through gateway and cloud worker, the caps, the memory verdict."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.load import MAX_MINUTES, MAX_RATE, memory_report, percentile_ms


def _bench(*args: str, timeout_s: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ebrain", "bench", "load", *args], capture_output=True, text=True,
                          timeout=timeout_s, check=False)


@pytest.mark.integration
def test_a_short_sustained_run_loses_nothing_and_reports_latency_and_memory() -> None:
    done = _bench("--rate", "4", "--minutes", "0.25", "--sample-s", "1", "--drain-s", "90", "--json")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["bench"] == "load"
    assert result["stages"] == ["gateway", "cloud"]
    assert result["sent"] == 60 == result["received"]
    assert result["lost"] == 0
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert result["achieved_rate"] == pytest.approx(4, rel=0.2)
    assert set(result["memory"]) == {"mosquitto", "kafka", "gateway", "cloud"}
    for name, mem in result["memory"].items():
        assert 0 < mem["rss_start"] <= mem["rss_max"], name
        assert mem["rss_end"] <= mem["rss_max"], name
        assert mem["checked"] == (name in ("gateway", "cloud"))
    assert result["samples"] >= 10
    assert result["ok"] is True


@pytest.mark.parametrize(("args", "needle"), [
    (["--rate", str(MAX_RATE * 2)], "--rate"),
    (["--rate", "0"], "--rate"),
    (["--minutes", str(MAX_MINUTES + 1)], "--minutes"),
    (["--stages", "cloud"], "--stages"),
])
def test_rates_and_durations_above_the_caps_are_refused_before_anything_starts(args: list[str], needle: str) -> None:
    done = _bench(*args, "--json", timeout_s=60)
    assert done.returncode == 2
    assert needle in done.stderr
    assert done.stdout == ""


def test_memory_growth_beyond_the_bound_fails_only_for_our_components() -> None:
    samples: list[tuple[float, dict[str, float | None]]] = [
        (float(t), {"gateway": 100.0 + 10 * t, "cloud": 200.0, "kafka": 50.0 + 100 * t}) for t in range(10)]
    report = memory_report(samples, warm_until=2.0, max_growth_mb=32)
    assert report["gateway"] == {"rss_start": 120.0, "rss_end": 190.0, "rss_max": 190.0, "growth_mb": 70.0,
                                 "checked": True, "ok": False}
    assert report["cloud"]["ok"] is True
    assert report["cloud"]["growth_mb"] == 0
    assert report["kafka"]["ok"] is True  # a broker is reported, not judged
    assert report["kafka"]["checked"] is False


def test_percentiles() -> None:
    assert percentile_ms([], 0.99) is None
    values = [i / 1000 for i in range(1, 101)]
    assert percentile_ms(values, 0.5) == 51.0
    assert percentile_ms(values, 0.99) == 100.0
