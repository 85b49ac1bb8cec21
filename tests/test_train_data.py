"""The trainer reads exactly what an ingest manifest names; the CLI's cheap paths; the periodic schedule."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("pyarrow")

from cloud.ingest.adapters.store import DatasetStore
from cloud.ingest.core.quality import Quality
from cloud.ingest.core.records import Curated, Record
from trainers.adapters import data
from trainers.adapters.registry import Registry
from trainers.cli import app
from trainers.core import pairs
from trainers.core.schedule import due


def _curated(i: int, kind: str = "distill") -> Curated:
    record = Record(record_id=f"id{i}", tenant="acme", device="d1", kind=kind, request_id=f"q{i}",
                    prompt=f"How do I reset pump {i}?", answer=f"Hold the reset button of pump {i} for 5 s.",
                    created=datetime(2026, 11, 29, tzinfo=UTC), draft="I am not sure.")
    return Curated(record, Quality(score=1.0, language="en", repetition=0.0, agreement=0.1, drop=None))


def test_rows_from_a_manifest_become_training_pairs(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path)
    first = store.commit([_curated(i) for i in range(3)], Counter())
    store.commit([_curated(3), _curated(4, kind="local")], Counter())
    store.close()
    assert first is not None
    rows, ident = data.load(tmp_path, first["manifest_id"])  # an older manifest: only its files
    assert ident == first["manifest_id"]
    assert sorted(r["record_id"] for r in rows) == ["id0", "id1", "id2"]
    latest, latest_id = data.load(tmp_path)
    assert latest_id != ident
    examples = pairs.sft_examples(latest, pairs.PairConfig())
    assert sorted(e.record_id for e in examples) == ["id0", "id1", "id2", "id3"]  # files in path order
    dpo = pairs.dpo_pairs(latest, pairs.PairConfig())
    assert dpo[0].chosen.startswith("Hold the reset")
    assert dpo[0].rejected == "I am not sure."


def test_a_tampered_file_is_refused(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path)
    manifest = store.commit([_curated(0)], Counter())
    store.close()
    assert manifest is not None
    (tmp_path / manifest["files"][0]["path"]).write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="does not match its manifest hash"):
        data.load(tmp_path)


def test_cli_registry_and_run_without_data(tmp_path: Path) -> None:
    (tmp_path / "m.gguf").write_bytes(b"x" * 10)
    Registry(tmp_path / "reg").register(tmp_path / "m.gguf", parent=None, status="base")
    runner = CliRunner()
    shown = runner.invoke(app, ["registry", "--registry-dir", str(tmp_path / "reg")])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["current"] == "v0"
    missing = runner.invoke(app, ["run", "--data-dir", str(tmp_path / "none"), "--registry-dir", str(tmp_path)])
    assert missing.exit_code == 2
    assert "MANIFEST.json" in missing.output


def test_periodic_schedule() -> None:
    kw = {"interval_s": 100.0, "every_records": 50}
    assert due(now=0, last_run=None, records=0, records_at_last=0, **kw).run is False
    assert due(now=0, last_run=None, records=3, records_at_last=0, **kw).run is True
    assert due(now=10, last_run=0, records=60, records_at_last=5, **kw).reason == "55 new records >= 50"
    assert due(now=10, last_run=0, records=20, records_at_last=5, **kw).run is False
    assert due(now=150, last_run=0, records=20, records_at_last=5, **kw).run is True
    assert due(now=150, last_run=0, records=5, records_at_last=5, **kw).run is False  # nothing new to learn
    assert due(now=10, last_run=0, records=60, records_at_last=100, **kw).run is True  # rebuilt dataset
