"""Process health for telemetry: RSS, peak RSS and CPU use, from the standard library only (no psutil)."""

from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import dataclass, field


def rss_mb() -> float:
    """Resident set size now, in MB (Linux /proc; elsewhere the peak, which is what getrusage knows)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def peak_rss_mb() -> float:
    """The process's peak resident set size in MB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


@dataclass(slots=True)
class CpuMeter:
    """CPU use between two readings, as a percentage of one core (200 = two cores busy)."""

    _cpu: float = field(default_factory=_cpu_s)
    _wall: float = field(default_factory=time.monotonic)

    def read(self) -> float:
        cpu, wall = _cpu_s(), time.monotonic()
        pct = 100.0 * (cpu - self._cpu) / max(wall - self._wall, 1e-6)
        self._cpu, self._wall = cpu, wall
        return pct


@dataclass(slots=True)
class RateMeter:
    """Tokens per second of inference time between two readings (0 when nothing ran)."""

    _tokens: int = 0
    _busy_s: float = 0.0

    def read(self, tokens: int, busy_s: float) -> float:
        d_tokens, d_busy = tokens - self._tokens, busy_s - self._busy_s
        self._tokens, self._busy_s = tokens, busy_s
        return d_tokens / d_busy if d_busy > 0 else 0.0
