"""Exact and near-duplicate detection that survives restarts: exact keys in SQLite, MinHash LSH (datasketch)
pickled to disk, one index per tenant (one tenant's data never decides what another tenant keeps).

A replayed record finds itself (same record id) and is not called a duplicate of itself, so the index may be
saved before the dataset commit: a crash in between only makes the replay re-check against its own entries.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sqlite3
from pathlib import Path
from typing import Any


class DedupIndex:
    """`check(...)` says "exact_duplicate", "near_duplicate" or None (and remembers a new record)."""

    def __init__(self, state_dir: Path, *, threshold: float = 0.8, num_perm: int = 128) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self._dir = state_dir
        self.threshold = threshold
        self.num_perm = num_perm
        self._db = sqlite3.connect(state_dir / "exact.sqlite", check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS exact (key TEXT PRIMARY KEY, record_id TEXT NOT NULL)")
        self._lsh: dict[str, Any] = {}
        self._dirty: set[str] = set()

    def _path(self, tenant: str) -> Path:
        return self._dir / f"lsh-{hashlib.sha256(tenant.encode()).hexdigest()[:16]}.pkl"

    def _index(self, tenant: str) -> Any:
        if tenant not in self._lsh:
            from datasketch import MinHashLSH  # noqa: PLC0415

            path = self._path(tenant)
            if path.exists():
                with path.open("rb") as f:
                    self._lsh[tenant] = pickle.load(f)  # noqa: S301 - our own file in our state dir
            else:
                self._lsh[tenant] = MinHashLSH(threshold=self.threshold, num_perm=self.num_perm)
        return self._lsh[tenant]

    def minhash(self, shingles: set[str]) -> Any:
        """The MinHash signature of a shingle set."""
        from datasketch import MinHash  # noqa: PLC0415

        m = MinHash(num_perm=self.num_perm)
        m.update_batch([s.encode() for s in sorted(shingles)])
        return m

    def check(self, tenant: str, record_id: str, exact_key: str, shingles: set[str]) -> str | None:
        """The duplicate reason for this record, or None after remembering it as new."""
        row = self._db.execute("SELECT record_id FROM exact WHERE key = ?", (exact_key,)).fetchone()
        if row is not None and row[0] != record_id:
            return "exact_duplicate"
        lsh = self._index(tenant)
        signature = self.minhash(shingles)
        if any(other != record_id for other in lsh.query(signature)):
            return "near_duplicate"
        self._db.execute("INSERT OR IGNORE INTO exact (key, record_id) VALUES (?, ?)", (exact_key, record_id))
        if record_id not in lsh:
            lsh.insert(record_id, signature)
            self._dirty.add(tenant)
        return None

    def flush(self) -> None:
        """Persist what changed: the exact keys, then each touched tenant's LSH (atomic rename)."""
        self._db.commit()
        for tenant in sorted(self._dirty):
            path = self._path(tenant)
            tmp = path.with_suffix(".tmp")
            with tmp.open("wb") as f:
                pickle.dump(self._lsh[tenant], f, protocol=pickle.HIGHEST_PROTOCOL)
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(path)
        self._dirty.clear()

    def close(self) -> None:
        """Flush and close the database."""
        self.flush()
        self._db.close()
