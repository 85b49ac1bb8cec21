"""The store-and-forward spool: a bounded on-disk queue of encoded messages in SQLite (WAL mode).

Order: entries leave by (priority, seq): every escalation and result (CRITICAL) before any telemetry (BULK),
and first in, first out within a priority. `seq` is an AUTOINCREMENT key, so it never goes backwards, even
after the newest rows were deleted and the process restarted.

Durability (fsync policy): the database runs in WAL mode. CRITICAL entries commit with `synchronous=FULL`:
the WAL is fsynced before `put` returns, so once the agent has told its caller "sent" (the spool took it),
neither a kill -9 nor a power loss loses it. BULK (telemetry) commits with `synchronous=NORMAL`: a power loss
may lose the last few telemetry rows (never corrupt the file); a process kill loses nothing. Deletes (after a
PUBACK) also commit with NORMAL: a delete lost to a power cut only means that message is sent again, which
downstream tolerates by message id.

Bounds (counted in `counters` and Prometheus): at most `max_entries` rows. When full, a new entry first
evicts the oldest telemetry row (`dropped_overflow`); when no telemetry is left to evict, new telemetry is
refused (`refused_bulk`) and a new CRITICAL entry raises SpoolFullError, so the caller can refuse the request
clearly instead of losing it silently. Entries older than `ttl_s` are dropped when they reach the head
(`expired`).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import Counter, Gauge

CRITICAL = 0  # escalations, results, feedback: never dropped silently
BULK = 1  # telemetry: evicted first when full

DEPTH = Gauge("ebrain_edge_spool_entries", "Messages waiting in the store-and-forward spool")
DROPPED = Counter("ebrain_edge_spool_dropped_total", "Spool entries dropped or refused", ["reason"])

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    priority INTEGER NOT NULL,
    msg_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS spool_order ON spool (priority, seq);
"""


class SpoolFullError(Exception):
    """Retryable later: the spool holds `max_entries` messages that must not be dropped. Refuse new work."""


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    priority: int
    msg_id: str
    topic: str
    payload: bytes
    created: float


class Spool:
    """A bounded, durable FIFO with two priorities. Thread-safe; every call is a short SQLite transaction."""

    def __init__(
        self, path: Path, *, max_entries: int = 10_000, ttl_s: float = 7 * 24 * 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._max, self._ttl_s, self._clock = max_entries, ttl_s, clock
        self._lock = threading.Lock()
        # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves, so each call is one transaction.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self.counters: dict[str, int] = {"spooled": 0, "sent": 0, "expired": 0, "dropped_overflow": 0,
                                         "refused_bulk": 0, "refused_critical": 0}
        self._depth = self._count()
        DEPTH.set(self._depth)

    def __len__(self) -> int:
        return self._depth

    def put(self, topic: str, payload: bytes, msg_id: str, priority: int = CRITICAL) -> bool:
        """Store one message durably (see the module's fsync policy); False when BULK was refused.

        Raises SpoolFullError when a CRITICAL message does not fit.
        """
        with self._lock:
            self._sync(full=priority == CRITICAL)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._depth >= self._max and not self._make_room(priority):
                    self._db.execute("ROLLBACK")
                    return False
                self._db.execute(
                    "INSERT INTO spool (priority, msg_id, topic, payload, created) VALUES (?, ?, ?, ?, ?)",
                    (priority, msg_id, topic, payload, self._clock()),
                )
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                self._depth = self._count()
                raise
            self._depth += 1
            self.counters["spooled"] += 1
            DEPTH.set(self._depth)
            return True

    def head(self, limit: int = 1) -> list[Entry]:
        """The next `limit` entries in send order, after dropping the expired ones (counted)."""
        with self._lock:
            self._expire()
            rows = self._db.execute(
                "SELECT seq, priority, msg_id, topic, payload, created FROM spool ORDER BY priority, seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [Entry(r[0], r[1], r[2], r[3], bytes(r[4]), r[5]) for r in rows]

    def remove(self, seq: int) -> None:
        """Delete an entry once the broker acknowledged it (PUBACK)."""
        with self._lock:
            self._sync(full=False)
            deleted = self._db.execute("DELETE FROM spool WHERE seq = ?", (seq,)).rowcount
            self._depth -= deleted
            self.counters["sent"] += deleted
            DEPTH.set(self._depth)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _make_room(self, priority: int) -> bool:
        """Inside a transaction on a full spool: evict the oldest BULK row, or refuse (False / SpoolFullError)."""
        oldest = self._db.execute("SELECT seq FROM spool WHERE priority = ? ORDER BY seq LIMIT 1", (BULK,)).fetchone()
        if oldest is not None:
            self._db.execute("DELETE FROM spool WHERE seq = ?", (oldest[0],))
            self._depth -= 1
            self.counters["dropped_overflow"] += 1
            DROPPED.labels("overflow").inc()
            return True
        if priority == CRITICAL:
            self.counters["refused_critical"] += 1
            DROPPED.labels("refused_critical").inc()
            raise SpoolFullError(f"spool {self.path} holds {self._max} messages that must not be dropped")
        self.counters["refused_bulk"] += 1
        DROPPED.labels("refused_bulk").inc()
        return False

    def _expire(self) -> None:
        cutoff = self._clock() - self._ttl_s
        self._sync(full=False)
        expired = self._db.execute("DELETE FROM spool WHERE created < ?", (cutoff,)).rowcount
        if expired:
            self._depth -= expired
            self.counters["expired"] += expired
            DROPPED.labels("expired").inc(expired)
            DEPTH.set(self._depth)

    def _sync(self, *, full: bool) -> None:
        # A per-connection setting read at commit time; FULL fsyncs the WAL on every commit.
        self._db.execute(f"PRAGMA synchronous={'FULL' if full else 'NORMAL'}")

    def _count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM spool").fetchone()[0])
