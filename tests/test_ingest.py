# ruff: noqa: RUF001 - Chinese test text is written with its own punctuation
"""Ingestion pipeline with the real Presidio scanner, datasketch index and Parquet store (no Kafka here):
canaries never reach the dataset, quarantine, exact and near dedup, manifests, idempotent replay."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.ingest.adapters.presidio import PresidioAnonymizer
from cloud.ingest.adapters.store import read_records
from cloud.ingest.app import Dataset, build_pipeline
from cloud.ingest.core.pii import Span, resolve
from cloud.ingest.core.pipeline import Pipeline
from cloud.ingest.core.placeholders import PlaceholderBook, substitute
from cloud.ingest.core.records import Record, record_id
from cloud.ingest.settings import IngestSettings

CANARIES = {
    "email": "canary.wright@example.org",
    "phone": "+1 415-555-0199",
    "card": "4111 1111 1111 1111",
    "name": "Margaret Wright",
    "cn_id": "11010519491231002X",
    "cn_mobile": "13912345678",
    "cn_name": "李秀英",
    "ip": "10.20.30.40",
    "key": "sk-canaryCANARYcanary0123456789abcd",
}
ANSWER = ("Stop the consumers, then run kafka-consumer-groups with --reset-offsets --to-earliest --execute for "
          "the group, and start the consumers again so they read from the beginning of each partition.")


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return build_pipeline(IngestSettings())


@pytest.fixture
def dataset(tmp_path: Path) -> Iterator[Dataset]:
    opened = Dataset.open(IngestSettings(data_dir=tmp_path))
    yield opened
    opened.close()


def _record(n: int, prompt: str, answer: str = ANSWER, *, tenant: str = "acme", draft: str | None = None,
            kind: str = "local") -> Record:
    return Record(record_id(tenant, "dev-1", f"req-{n}", kind), tenant, "dev-1", kind, f"req-{n}", prompt, answer,
                  datetime(2026, 11, 29, 12, tzinfo=UTC), draft=draft, seq=n)


def _canary_records() -> list[Record]:
    c = CANARIES
    return [
        _record(1, f"My name is {c['name']}, mail me at {c['email']} or call {c['phone']}. How do I reset offsets?",
                f"Sure {c['name']}: " + ANSWER),
        _record(2, f"I paid with {c['card']} and our server {c['ip']} logs key {c['key']}. Why is the group stuck?",
                "The group is stuck because a member holds the partitions; restart it, then check lag again."),
        _record(3, f"联系人：{c['cn_name']}，手机{c['cn_mobile']}，身份证{c['cn_id']}。怎么配置消费者组？",
                "把所有实例设置为同一个消费者组，然后增加分区数量，就可以并行消费消息了。", kind="distill",
                draft=f"请联系{c['cn_mobile']}。"),
    ]


def _all_text(root: Path) -> str:
    """Every string in every dataset Parquet file, plus the raw bytes of every other non-quarantine file."""
    parts: list[str] = []
    for path in root.rglob("*"):
        if not path.is_file() or "quarantine" in path.parts:
            continue
        if path.suffix == ".parquet":
            parts.append(json.dumps(pq.read_table(path).to_pylist(), default=str, ensure_ascii=False))
        else:
            parts.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(parts)


def test_canaries_never_reach_the_dataset(pipeline: Pipeline, dataset: Dataset, tmp_path: Path) -> None:
    outcome = pipeline.process(_canary_records(), dataset.index, dataset.store)
    assert len(outcome.kept) == 3, outcome.dropped
    written = _all_text(tmp_path)
    assert "<PERSON_1>" in written
    for kind, canary in CANARIES.items():
        assert canary not in written, kind
        assert canary.replace(" ", "") not in written, kind


def test_one_record_shares_placeholders_across_fields(pipeline: Pipeline, dataset: Dataset, tmp_path: Path) -> None:
    pipeline.process(_canary_records(), dataset.index, dataset.store)
    rows = {r["request_id"]: r for r in read_records(tmp_path)}
    first, chinese = rows["req-1"], rows["req-3"]
    assert first["prompt"].startswith("My name is <PERSON_1>, mail me at <EMAIL_ADDRESS_1> or call <PHONE_NUMBER_1>")
    assert first["answer"].startswith("Sure <PERSON_1>: ")
    assert "<CN_MOBILE_1>" in chinese["prompt"]
    assert chinese["draft"] == "请联系<CN_MOBILE_1>。"
    assert json.loads(chinese["pii"]) == {"CN_MOBILE": 2, "CN_RESIDENT_ID": 1, "PERSON": 1}
    assert {r["tenant"] for r in rows.values()} == {"acme"}


class _Poisoned:
    """A scanner that cannot scan texts containing POISON (as a crashing analyzer would)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner

    def scan_batch(self, texts: Sequence[str]) -> list[list[Span]]:
        if any("POISON" in t for t in texts):
            raise RuntimeError("analyzer crashed")
        return self.inner.scan_batch(texts)  # type: ignore[attr-defined, no-any-return]


def test_unscannable_record_goes_to_quarantine_not_the_dataset(
    pipeline: Pipeline, dataset: Dataset, tmp_path: Path
) -> None:
    poisoned = Pipeline(_Poisoned(pipeline.scanner), pipeline.anonymizer, pipeline.policy)
    secret = f"POISON from {CANARIES['email']}: how do I reset offsets?"
    huge = "x" * 70_000 + CANARIES["email"]
    records = [_record(1, secret), _record(2, "How do I reset offsets on a stopped group?"), _record(3, huge)]
    outcome = poisoned.process(records, dataset.index, dataset.store)
    assert [q.reason for q in outcome.quarantined] == ["scan_failed:RuntimeError", "scan_failed:ScanError"]
    assert len(outcome.kept) == 1
    assert CANARIES["email"] not in _all_text(tmp_path)
    files = list((tmp_path / "quarantine").rglob("*.jsonl"))
    assert len(files) == 1
    assert oct(os.stat(files[0]).st_mode & 0o777) == "0o600"
    assert len(files[0].read_text().splitlines()) == 2
    manifest = json.loads((tmp_path / "MANIFEST.json").read_text())
    assert manifest["records"] == 1
    assert manifest["counts"]["quarantined"] == {"scan_failed:RuntimeError": 1, "scan_failed:ScanError": 1}


def test_exact_and_near_duplicates_are_dropped_distinct_kept(pipeline: Pipeline, tmp_path: Path) -> None:
    settings = IngestSettings(data_dir=tmp_path)
    base = "How do I move a consumer group to the earliest offsets without losing the committed positions?"
    records = [
        _record(1, base),
        _record(2, base.upper() + "  "),  # exact after normalization
        _record(3, base, ANSWER.replace("beginning", "start")),  # near duplicate
        _record(4, "What is the difference between QoS 1 and QoS 2 in MQTT?",
                "QoS 1 delivers at least once with PUBACK; QoS 2 delivers exactly once with a four-step handshake."),
        _record(5, base, ANSWER, tenant="other"),  # another tenant's data never deduplicates against acme's
    ]
    dataset = Dataset.open(settings)
    outcome = pipeline.process(records[:3], dataset.index, dataset.store)
    dataset.close()
    assert outcome.dropped == {"exact_duplicate": 1, "near_duplicate": 1}
    dataset = Dataset.open(settings)  # the index was persisted: a restart still knows record 1
    outcome = pipeline.process([_record(6, base, ANSWER + " "), *records[3:]], dataset.index, dataset.store)
    dataset.close()
    assert outcome.dropped == {"exact_duplicate": 1}
    assert sorted(c.record.request_id for c in outcome.kept) == ["req-4", "req-5"]
    manifest = json.loads((tmp_path / "MANIFEST.json").read_text())
    assert manifest["counts"]["dropped"] == {"exact_duplicate": 2, "near_duplicate": 1}
    assert sorted({f["tenant"] for f in manifest["files"]}) == ["acme", "other"]
    assert all("/tenant=" in f["path"] and "date=2026-11-29" in f["path"] for f in manifest["files"])


def test_manifest_names_its_files_and_replay_adds_nothing(
    pipeline: Pipeline, dataset: Dataset, tmp_path: Path
) -> None:
    records = _canary_records()
    first = pipeline.process(records, dataset.index, dataset.store).manifest
    assert first is not None
    files_before = sorted(p.name for p in (tmp_path / "data").rglob("*.parquet"))
    again = pipeline.process(records, dataset.index, dataset.store)
    assert not again.kept
    assert again.dropped == {"replayed": 3}
    assert sorted(p.name for p in (tmp_path / "data").rglob("*.parquet")) == files_before
    assert again.manifest is not None
    assert again.manifest["records"] == first["records"] == 3
    assert {f["sha256"] for f in again.manifest["files"]} == {f["sha256"] for f in first["files"]}
    assert (tmp_path / "manifests" / f"{first['manifest_id']}.json").exists()
    assert len(read_records(tmp_path, first["manifest_id"])) == 3
    (tmp_path / first["files"][0]["path"]).write_bytes(b"tampered")
    with pytest.raises(ValueError, match="does not match"):
        read_records(tmp_path, first["manifest_id"])


def test_orphan_files_from_a_crash_are_removed_on_open(tmp_path: Path) -> None:
    orphan = tmp_path / "data" / "date=2026-11-29" / "tenant=acme" / "part-crashed.parquet"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"half written")
    Dataset.open(IngestSettings(data_dir=tmp_path)).close()
    assert not orphan.exists()


def test_scanner_beats_plain_presidio_recall_on_the_labelled_set() -> None:
    from bench.pii import run  # noqa: PLC0415

    result = run(limit=40)
    assert result["recall"] >= 0.95
    assert result["recall"] >= result["presidio_recall"]
    assert result["precision"] >= result["presidio_precision"]
    assert result["speedup"] > 1.5


@given(st.lists(st.tuples(st.integers(0, 70), st.integers(1, 12), st.sampled_from(["PERSON", "EMAIL_ADDRESS"])),
                max_size=8))
@settings(max_examples=60, deadline=None)
def test_presidio_anonymizer_matches_the_core_reference(raw: list[tuple[int, int, str]]) -> None:
    text = "Ann and Bob met Ann at ann@x.io while Bob wrote to bob@y.io and then Ann left."
    spans = resolve([Span(s, min(s + n, len(text)), e) for s, n, e in raw], text)
    reference = substitute(text, spans, PlaceholderBook())
    assert PresidioAnonymizer().anonymize(text, spans, PlaceholderBook()) == reference


def test_ingestor_counts_every_message_it_cannot_turn_into_a_record(pipeline: Pipeline, tmp_path: Path) -> None:
    from cloud.ingest.core.join import JoinWindow  # noqa: PLC0415
    from cloud.ingest.ingestor import ANSWERS, ESCALATIONS, RESULTS, Ingestor, Message  # noqa: PLC0415
    from schemas import Escalation, InferenceRequest, InferenceResult, encode, make  # noqa: PLC0415

    def result(request_id: str, route: str, **kw: Any) -> bytes:
        payload = InferenceResult(request_id=request_id, route=route, model_id="m", model_version="1",
                                  latency_ms=1.0, **kw)
        return encode(make(payload, tenant="acme", device="dev-1"))

    def escalation(request_id: str) -> bytes:
        req = InferenceRequest(request_id=request_id, prompt="How do I reset a consumer group?")
        return encode(make(Escalation(request=req, reason="low"), tenant="acme", device="dev-1"))

    dataset = Dataset.open(IngestSettings(data_dir=tmp_path))
    ingestor = Ingestor(pipeline, dataset.index, dataset.store, JoinWindow(capacity=10, max_age_s=60))
    batch = [
        Message(RESULTS, b"acme/dev-1", result("a", "local", text=ANSWER, prompt="How do I reset offsets?")),
        Message(RESULTS, b"acme/dev-1", result("b", "local", text=ANSWER)),  # no prompt shared
        Message(RESULTS, b"acme/dev-1", result("c", "local", status="failed")),
        Message(RESULTS, b"acme/dev-1", escalation("d")),  # wrong topic for the payload
        Message(ESCALATIONS, b"acme/dev-1", escalation("e")),
        Message(ANSWERS, b"acme/dev-1", result("e", "cloud", status="failed", reason="deadline")),
        Message(ESCALATIONS, b"acme/dev-1", escalation("f")),  # its answer never comes
    ]
    out = ingestor.handle(batch, now=0.0)
    assert [letter.data.reason for letter in out.dead_letters] == ["topic_mismatch"]
    assert len(out.outcome.kept) == 1
    assert out.outcome.dropped == {"no_prompt": 1, "not_ok": 1, "answer_not_ok": 1}
    later = ingestor.handle([], now=120.0)
    assert later.outcome.dropped == {"unjoined_escalation": 1}
    dataset.close()
    counts = json.loads((tmp_path / "MANIFEST.json").read_text())["counts"]["dropped"]
    assert counts == {"no_prompt": 1, "not_ok": 1, "answer_not_ok": 1, "unjoined_escalation": 1}
