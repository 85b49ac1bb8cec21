# ruff: noqa: RUF001 - Chinese test text is written with its own punctuation
"""`ebrain data curate` on a local Ray (2 CPUs): the batch output equals the streaming output on the same input,
and re-curating a curated dataset changes nothing."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cloud.ingest.adapters.store import read_records
from cloud.ingest.app import Dataset, build_pipeline
from cloud.ingest.batch import curate
from cloud.ingest.core.records import Record, record_id
from cloud.ingest.settings import IngestSettings

# Ray reads its own deprecated DataContext attributes on init: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")

ANSWER = ("Stop the consumers, then run kafka-consumer-groups with --reset-offsets --to-earliest --execute for "
          "the group, and start the consumers again so they read from the beginning of each partition.")
ROWS: list[dict[str, Any]] = [
    {"prompt": "I am Nora Quist (nora.quist@example.com). How do I reset offsets?", "answer": "Nora Quist: " + ANSWER},
    {"prompt": "I am Nora Quist (nora.quist@example.com). How do I reset offsets?", "answer": "Nora Quist: " + ANSWER},
    {"prompt": "How do I reset offsets for a stopped consumer group?", "answer": ANSWER},
    {"prompt": "How do I reset offsets for a stopped consumer group?", "answer": ANSWER.replace("beginning", "start")},
    {"prompt": "手机13912345678，怎么配置持久会话？",
     "answer": "连接时把 clean start 设为 false，并设置会话过期时间，断线后消息会保留。", "tenant": "beta"},
    {"prompt": "What is QoS 2?", "answer": "I'm sorry, but I can't help with that."},
    {"prompt": "Why is the lag growing on partition 3 after a rebalance?", "answer": "loop " * 40},
    {"prompt": "What does acks=all mean for a producer?",
     "answer": "The leader waits until every in-sync replica has the record before it acknowledges the write.",
     "draft": "The leader waits for replicas.", "kind": "distill"},
]


def _records() -> list[Record]:
    out = []
    for i, row in enumerate(ROWS, start=1):
        tenant, kind = row.get("tenant", "acme"), row.get("kind", "local")
        out.append(Record(record_id(tenant, "dev-1", f"r{i}", kind), tenant, "dev-1", kind, f"r{i}", row["prompt"],
                          row["answer"], datetime(2026, 11, 29, 9, tzinfo=UTC), draft=row.get("draft"), seq=i))
    return out


def _raw(r: Record) -> dict[str, Any]:
    """A record as a raw export row (what `curate --input x.jsonl` reads)."""
    return {"record_id": r.record_id, "tenant": r.tenant, "device": r.device, "kind": r.kind,
            "request_id": r.request_id, "prompt": r.prompt, "answer": r.answer, "draft": r.draft,
            "created": r.created.isoformat()}


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    import ray  # noqa: PLC0415

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local Ray without token auth (ENVIRONMENT.md)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


def _rows(root: Path) -> list[tuple[Any, ...]]:
    return sorted((r["record_id"], r["tenant"], r["prompt"], r["answer"], r["draft"], r["quality"])
                  for r in read_records(root))


@pytest.mark.usefixtures("ray_local")
def test_ray_curate_equals_streaming_on_the_same_input(tmp_path: Path) -> None:
    streaming = IngestSettings(data_dir=tmp_path / "streaming")
    dataset = Dataset.open(streaming)
    pipeline = build_pipeline(streaming)
    records = _records()
    pipeline.process(records[:3], dataset.index, dataset.store)  # two batches, as a worker would commit
    pipeline.process(records[3:], dataset.index, dataset.store)
    dataset.close()

    raw = tmp_path / "raw.jsonl"
    raw.write_text("".join(json.dumps(_raw(r), ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    summary = curate(IngestSettings(data_dir=tmp_path / "batch"), raw, num_cpus=2, actors=2, batch_size=3)

    assert _rows(tmp_path / "batch") == _rows(tmp_path / "streaming")
    streamed = json.loads((tmp_path / "streaming" / "MANIFEST.json").read_text())
    batched = json.loads((tmp_path / "batch" / "MANIFEST.json").read_text())
    assert batched["counts"]["dropped"] == streamed["counts"]["dropped"] == {
        "exact_duplicate": 1, "near_duplicate": 1, "refusal": 1, "repetitive": 1}
    assert summary["written"] == batched["records"] == 4
    text = json.dumps(read_records(tmp_path / "batch"), default=str, ensure_ascii=False)
    assert "Nora Quist" not in text
    assert "13912345678" not in text

    again = curate(IngestSettings(data_dir=tmp_path / "again"), tmp_path / "batch", num_cpus=2, actors=1)
    assert again["written"] == 4
    assert [r[2:5] for r in _rows(tmp_path / "again")] == [r[2:5] for r in _rows(tmp_path / "batch")]


@pytest.mark.usefixtures("ray_local")
def test_curate_command_prints_a_json_summary(tmp_path: Path) -> None:
    from typer.testing import CliRunner  # noqa: PLC0415

    from cloud.ingest.cli import app  # noqa: PLC0415

    raw = tmp_path / "raw.jsonl"
    raw.write_text("".join(json.dumps(_raw(r), ensure_ascii=False) + "\n" for r in _records()[:3]), encoding="utf-8")
    result = CliRunner().invoke(app, ["curate", "--input", str(raw), "--output", str(tmp_path / "out"),
                                      "--actors", "1"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["input"] == 3
    assert summary["written"] == 2
    assert summary["dropped"] == {"exact_duplicate": 1}
    assert (tmp_path / "out" / "manifests" / f"{summary['manifest_id']}.json").exists()
