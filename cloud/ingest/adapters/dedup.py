"""Exact and near-duplicate detection that survives restarts: exact keys and MinHash signatures in SQLite,
MinHash LSH (datasketch) pickled to disk, one LSH per tenant (one tenant's data never decides what another
tenant keeps). LSH proposes candidates with a bias to recall; a candidate is a near duplicate only when the
estimated Jaccard similarity of the two signatures reaches the threshold.

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
        self._db.execute("CREATE TABLE IF NOT EXISTS sig (record_id TEXT PRIMARY KEY, hashvalues BLOB NOT NULL)")
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
                # Weighted towards recall: LSH only proposes candidates, `_similar` checks each one.
                self._lsh[tenant] = MinHashLSH(threshold=self.threshold, num_perm=self.num_perm, weights=(0.1, 0.9))
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
        if any(other != record_id and self._similar(other, signature) for other in lsh.query(signature)):
            return "near_duplicate"
        self._db.execute("INSERT OR IGNORE INTO exact (key, record_id) VALUES (?, ?)", (exact_key, record_id))
        self._db.execute("INSERT OR IGNORE INTO sig (record_id, hashvalues) VALUES (?, ?)",
                         (record_id, signature.hashvalues.tobytes()))
        if record_id not in lsh:
            lsh.insert(record_id, signature)
            self._dirty.add(tenant)
        return None

    def _similar(self, other: str, signature: Any) -> bool:
        """Estimated Jaccard of a candidate's stored signature with `signature` reaches the threshold."""
        import numpy as np  # noqa: PLC0415

        row = self._db.execute("SELECT hashvalues FROM sig WHERE record_id = ?", (other,)).fetchone()
        if row is None:
            return False
        stored = np.frombuffer(row[0], dtype=signature.hashvalues.dtype)
        # What MinHash.jaccard computes: the share of equal permutation minima.
        return bool(stored.shape == signature.hashvalues.shape
                    and np.mean(stored == signature.hashvalues) >= self.threshold)

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
