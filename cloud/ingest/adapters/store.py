"""The dataset on disk: Parquet partitioned `date=/tenant=`, a manifest per commit, quarantine apart.

    ROOT/data/date=2026-11-29/tenant=acme/part-<commit>.parquet   the dataset (redacted records only)
    ROOT/quarantine/date=.../part-<commit>.jsonl                   records that could not be scanned (0600)
    ROOT/manifests/<manifest_id>.json, ROOT/MANIFEST.json          what a training run names
    ROOT/state/store.sqlite                                        seen record ids, files, drop counts

A commit writes its Parquet files first, then records ids, files and counts in one SQLite transaction, then
the manifest. Files not in the `files` table (a crash before the transaction) are deleted on open, so a
record id is in the dataset at most once and replays add nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cloud.ingest.core.records import RECORD_SCHEMA_VERSION, Curated, Quarantined

_DDL = (
    "CREATE TABLE IF NOT EXISTS seen (record_id TEXT PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, sha256 TEXT, rows INTEGER, tenant TEXT, date TEXT)",
    "CREATE TABLE IF NOT EXISTS counts (kind TEXT, reason TEXT, n INTEGER, PRIMARY KEY (kind, reason))",
)


def _schema() -> Any:
    import pyarrow as pa  # noqa: PLC0415

    return pa.schema([
        ("record_id", pa.string()), ("schema_version", pa.int32()), ("device", pa.string()),
        ("kind", pa.string()), ("request_id", pa.string()), ("prompt", pa.string()), ("answer", pa.string()),
        ("draft", pa.string()), ("model_id", pa.string()), ("model_version", pa.string()),
        ("draft_model_id", pa.string()), ("source_ids", pa.list_(pa.string())),
        ("quality", pa.float64()), ("language", pa.string()), ("repetition", pa.float64()),
        ("agreement", pa.float64()), ("pii", pa.string()), ("created", pa.timestamp("ms", tz="UTC")),
    ])


def _row(item: Curated) -> dict[str, Any]:
    r, q = item.record, item.quality
    return {
        "record_id": r.record_id, "schema_version": RECORD_SCHEMA_VERSION, "device": r.device, "kind": r.kind,
        "request_id": r.request_id, "prompt": r.prompt, "answer": r.answer, "draft": r.draft,
        "model_id": r.model_id, "model_version": r.model_version, "draft_model_id": r.draft_model_id,
        "source_ids": list(r.source_ids), "quality": q.score, "language": q.language,
        "repetition": q.repetition, "agreement": q.agreement, "pii": json.dumps(r.pii, sort_keys=True),
        "created": r.created,
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class DatasetStore:
    """Idempotent, append-only training dataset with manifests. Not safe for two writers on one root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("data", "quarantine", "manifests", "state"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(root / "state" / "store.sqlite", check_same_thread=False)
        for ddl in _DDL:
            self._db.execute(ddl)
        self._db.commit()
        self._remove_orphans()

    def _remove_orphans(self) -> None:
        known = {row[0] for row in self._db.execute("SELECT path FROM files")}
        for path in (self.root / "data").rglob("*.parquet*"):
            if path.relative_to(self.root).as_posix() not in known:
                path.unlink()

    def unseen(self, record_ids: Iterable[str]) -> set[str]:
        """The ids not yet in the dataset."""
        ids = set(record_ids)
        if not ids:
            return ids
        query = f"SELECT record_id FROM seen WHERE record_id IN ({','.join('?' * len(ids))})"  # noqa: S608
        return ids - {row[0] for row in self._db.execute(query, tuple(ids))}

    def commit(
        self, kept: Sequence[Curated], dropped: Counter[str], quarantined: Sequence[Quarantined] = (),
        decided: Iterable[str] = (),
    ) -> dict[str, Any] | None:
        """Write one batch; returns the new manifest (None when nothing changed).

        `decided` are the ids of dropped records: remembered like written ones, so a replay re-counts nothing.
        """
        if not kept and not dropped and not quarantined:
            return None
        batch = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + os.urandom(4).hex()
        self._quarantine(quarantined, batch)
        files = self._write_parquet(kept, batch)
        with self._db:
            ids = [(c.record.record_id,) for c in kept] + [(i,) for i in decided]
            self._db.executemany("INSERT OR IGNORE INTO seen VALUES (?)", ids)
            self._db.executemany("INSERT INTO files VALUES (?, ?, ?, ?, ?)", files)
            counts = [("dropped", reason, n) for reason, n in dropped.items()]
            counts += [("quarantined", reason, n) for reason, n in Counter(q.reason for q in quarantined).items()]
            counts.append(("written", "ok", len(kept)))
            self._db.executemany(
                "INSERT INTO counts VALUES (?, ?, ?) ON CONFLICT (kind, reason) DO UPDATE SET n = n + excluded.n",
                counts)
        return self.write_manifest()

    def _write_parquet(self, kept: Sequence[Curated], batch: str) -> list[tuple[str, str, int, str, str]]:
        import pyarrow as pa  # noqa: PLC0415
        import pyarrow.parquet as pq  # noqa: PLC0415

        groups: dict[tuple[str, str], list[Curated]] = {}
        for item in kept:
            groups.setdefault((item.record.date, item.record.tenant), []).append(item)
        files = []
        for (date, tenant), items in sorted(groups.items()):
            folder = self.root / "data" / f"date={date}" / f"tenant={tenant}"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"part-{batch}.parquet"
            table = pa.Table.from_pylist([_row(i) for i in items], schema=_schema())
            tmp = path.with_suffix(".parquet.tmp")
            pq.write_table(table, tmp, compression="zstd")
            tmp.replace(path)
            files.append((path.relative_to(self.root).as_posix(), _sha256(path), len(items), tenant, date))
        return files

    def _quarantine(self, quarantined: Sequence[Quarantined], batch: str) -> None:
        if not quarantined:
            return
        folder = self.root / "quarantine" / f"date={datetime.now(UTC):%Y-%m-%d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"part-{batch}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # raw text may hold PII
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for q in quarantined:
                row = {**asdict(q.record), "created": q.record.created.isoformat(), "reason": q.reason}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")

    def counts(self) -> dict[str, dict[str, int]]:
        """Cumulative counts: written, dropped by reason, quarantined by reason."""
        out: dict[str, dict[str, int]] = {"written": {}, "dropped": {}, "quarantined": {}}
        for kind, reason, n in self._db.execute("SELECT kind, reason, n FROM counts ORDER BY kind, reason"):
            out.setdefault(kind, {})[reason] = n
        return out

    def write_manifest(self) -> dict[str, Any]:
        """Build the manifest of everything committed so far, store it by id and as MANIFEST.json."""
        files = [{"path": p, "sha256": h, "rows": n, "tenant": t, "date": d}
                 for p, h, n, t, d in self._db.execute("SELECT * FROM files ORDER BY path")]
        ident = hashlib.sha256(json.dumps([RECORD_SCHEMA_VERSION, files], sort_keys=True).encode()).hexdigest()
        counts = self.counts()
        manifest = {
            "manifest_id": ident[:32],
            "schema_version": RECORD_SCHEMA_VERSION,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "records": sum(f["rows"] for f in files),
            "files": files,
            "counts": counts,
        }
        text = json.dumps(manifest, indent=1, sort_keys=True)
        for path in (self.root / "manifests" / f"{manifest['manifest_id']}.json", self.root / "MANIFEST.json"):
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(path)
        return manifest

    def close(self) -> None:
        """Close the state database."""
        self._db.close()


def read_records(root: Path, manifest_id: str | None = None) -> list[dict[str, Any]]:
    """The rows a manifest names (the latest when None), with tenant and date columns, in file order."""
    import pyarrow.parquet as pq  # noqa: PLC0415

    name = f"manifests/{manifest_id}.json" if manifest_id else "MANIFEST.json"
    manifest = json.loads((root / name).read_text())
    rows: list[dict[str, Any]] = []
    for entry in manifest["files"]:
        path = root / entry["path"]
        if _sha256(path) != entry["sha256"]:
            raise ValueError(f"{entry['path']} does not match its manifest hash")
        rows.extend({**row, "tenant": entry["tenant"], "date": entry["date"]}
                    for row in pq.read_table(path).to_pylist())
    return rows
