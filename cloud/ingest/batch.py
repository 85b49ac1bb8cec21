"""`ebrain data curate`: reprocess a dataset with the same pipeline, on a local Ray or a Ray cluster.

Redaction and quality (the CPU-heavy part: spaCy NER) run in parallel on Ray Data actors, each loading the
model once; deduplication then runs on the driver in input order, so the first of two duplicates is kept
exactly as the streaming worker would keep it, and the same input gives the same output either way.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cloud.ingest.core.pipeline import Outcome, Pipeline
from cloud.ingest.core.quality import Quality, assess
from cloud.ingest.core.records import Curated, Quarantined, Record, record_id
from cloud.ingest.settings import IngestSettings

log = logging.getLogger(__name__)

_RECORD_FIELDS = ("record_id", "tenant", "device", "kind", "request_id", "prompt", "answer", "draft",
                  "model_id", "model_version", "draft_model_id")


def _created(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value)
    return datetime.now(UTC)


def _opt(value: Any) -> str | None:
    """An optional string column: None, NaN (what nulls become in numpy batches) and "" are None."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return None
    return str(value)


def record_from_row(row: dict[str, Any], seq: int = 0) -> Record:
    """A Record from a dataset row or a raw JSONL export (missing ids are derived like the worker does)."""
    row = {k: _opt(v) if k in _RECORD_FIELDS else v for k, v in row.items()}
    tenant, device = str(row.get("tenant") or "default"), str(row.get("device") or "unknown")
    request_id, kind = str(row.get("request_id") or seq), str(row.get("kind") or "import")
    return Record(
        record_id=str(row.get("record_id") or record_id(tenant, device, request_id, kind)),
        tenant=tenant, device=device, kind=kind, request_id=request_id, prompt=str(row.get("prompt") or ""),
        answer=str(row.get("answer") or ""), created=_created(row.get("created")), draft=row.get("draft"),
        model_id=str(row.get("model_id") or ""), model_version=str(row.get("model_version") or ""),
        draft_model_id=row.get("draft_model_id"), source_ids=tuple(row.get("source_ids") or ()), seq=seq,
    )


def _to_row(record: Record, status: str, quality: Quality | None) -> dict[str, Any]:
    row: dict[str, Any] = {f: getattr(record, f) for f in _RECORD_FIELDS}
    row.update(created=record.created.isoformat(), source_ids=list(record.source_ids), status=status,
               pii=dict(record.pii), quality=None if quality is None else quality.score,
               language=None if quality is None else quality.language,
               repetition=None if quality is None else quality.repetition,
               agreement=None if quality is None else quality.agreement)
    return row


class RedactAssess:
    """A Ray Data actor: loads the pipeline once, then redacts and scores batches of rows."""

    def __init__(self, settings: dict[str, Any]) -> None:
        from cloud.ingest.app import build_pipeline  # noqa: PLC0415

        self._pipeline = build_pipeline(IngestSettings.model_validate(settings))

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        return rows_to_columns(redact_rows(self._pipeline, columns_to_rows(batch)))


def columns_to_rows(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """Ray's column batch (numpy arrays) as a list of plain dict rows."""
    names = list(batch)
    size = len(batch[names[0]]) if names else 0
    return [{n: _plain(batch[n][i]) for n in names} for i in range(size)]


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def rows_to_columns(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A list of rows as a column dict (JSON-encoding the nested pii counts)."""
    import json  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    names = list(rows[0]) if rows else ["status"]
    out: dict[str, Any] = {}
    for n in names:
        values = [json.dumps(r[n]) if n in {"pii", "source_ids"} else r[n] for r in rows]
        out[n] = np.array(values, dtype=object)
    return out


def redact_rows(pipeline: Pipeline, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Redact and assess rows; each result row carries `status`: kept, dropped:<why> or quarantined:<why>."""
    records = [record_from_row(r, int(r.get("_seq") or 0)) for r in rows]
    clean, bad = pipeline.redact(records)
    out = [_to_row(q.record, f"quarantined:{q.reason}", None) for q in bad]
    for record in clean:
        quality = assess(record.prompt, record.answer, record.draft, pipeline.policy)
        out.append(_to_row(record, f"dropped:{quality.drop}" if quality.drop else "kept", quality))
    for row, record in zip(out, [*[q.record for q in bad], *clean], strict=True):
        row["_seq"] = record.seq
    return out


def outcome_from_rows(rows: Iterable[dict[str, Any]]) -> Outcome:
    """Rebuild the pipeline's Outcome (before dedup) from result rows."""
    import json  # noqa: PLC0415

    outcome = Outcome()
    for row in rows:
        pii = json.loads(row["pii"]) if isinstance(row["pii"], str) else row["pii"]
        sources = json.loads(row["source_ids"]) if isinstance(row["source_ids"], str) else row["source_ids"]
        record = record_from_row({**row, "source_ids": sources}, int(row["_seq"]))
        record = record.with_text(record.prompt, record.answer, record.draft, dict(pii))
        status = str(row["status"])
        outcome.pii.update(pii)
        if status == "kept":
            agreement = row["agreement"]
            quality = Quality(float(row["quality"]), str(row["language"]), float(row["repetition"]),
                              None if agreement is None or math.isnan(agreement) else float(agreement), None)
            outcome.kept.append(Curated(record, quality))
        elif status.startswith("quarantined:"):
            outcome.quarantined.append(Quarantined(record, status.split(":", 1)[1]))
        else:
            outcome.dropped[status.split(":", 1)[1]] += 1
    return outcome


def read_input(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a JSONL file, a Parquet file or folder (hive `date=/tenant=` folders), or one of our datasets."""
    import json  # noqa: PLC0415

    if path.suffix in {".jsonl", ".json"}:
        with path.open(encoding="utf-8") as f:
            yield from (json.loads(line) for line in f if line.strip())
        return
    if (path / "MANIFEST.json").is_file():  # one of our datasets: exactly the files its manifest names
        from cloud.ingest.adapters.store import read_records  # noqa: PLC0415

        yield from read_records(path)
        return
    import pyarrow.dataset as pads  # noqa: PLC0415

    root = path / "data" if (path / "data").is_dir() else path
    yield from pads.dataset(root, format="parquet", partitioning="hive").to_table().to_pylist()


def curate(settings: IngestSettings, source: Path, *, ray_address: str | None = None, num_cpus: int = 2,
           actors: int = 2, batch_size: int = 64) -> dict[str, Any]:
    """Reprocess `source` into `settings.data_dir` with Ray; returns the summary with the manifest id.

    Without `ray_address` a local Ray starts with `num_cpus` CPUs (or the running one is reused); `actors`
    pipeline copies (one spaCy model each) redact in parallel.
    """
    import ray  # noqa: PLC0415

    from cloud.ingest.app import Dataset  # noqa: PLC0415

    rows = [{**r, "_seq": i + 1, "created": _created(r.get("created")).isoformat()}
            for i, r in enumerate(read_input(source))]
    if ray_address:
        ray.init(address=ray_address, ignore_reinit_error=True, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    ds = ray.data.from_items([{k: v for k, v in r.items() if not isinstance(v, dict)} for r in rows])
    result = ds.map_batches(RedactAssess, fn_constructor_kwargs={"settings": settings.model_dump(mode="json")},
                            batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=max(1, actors)),
                            batch_format="numpy")
    outcome = outcome_from_rows(result.iter_rows())
    dataset = Dataset.open(settings)
    try:
        return _finish(outcome, dataset, len(rows))
    finally:
        dataset.close()


def _finish(outcome: Outcome, dataset: Any, total: int) -> dict[str, Any]:
    """Skip what the output already holds, dedupe in input order, commit once."""
    known = dataset.store.unseen(c.record.record_id for c in outcome.kept)
    replayed = [c for c in outcome.kept if c.record.record_id not in known]
    outcome.kept = [c for c in outcome.kept if c.record.record_id in known]
    outcome = Pipeline.dedupe(outcome, dataset.index)
    if replayed:
        outcome.dropped["replayed"] += len(replayed)
    dataset.index.flush()
    manifest = dataset.store.commit(outcome.kept, outcome.dropped, outcome.quarantined)
    manifest = manifest or dataset.store.write_manifest()
    return {"input": total, "written": len(outcome.kept), "dropped": dict(outcome.dropped),
            "quarantined": len(outcome.quarantined), "manifest_id": manifest["manifest_id"],
            "records": manifest["records"]}
