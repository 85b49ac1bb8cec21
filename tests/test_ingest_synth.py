"""`ebrain data synth` against the real cloud worker on Tansu: seeds are redacted before the model reads them,
requests go through `ebrain.request`, the Q/A pairs land in the dataset through the same pipeline."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from cloud.app import CloudWorker
from cloud.ingest.adapters.store import read_records
from cloud.ingest.app import build_pipeline
from cloud.ingest.core.pipeline import Pipeline
from cloud.ingest.settings import IngestSettings
from cloud.ingest.synth import synthesize
from cloud.settings import CloudSettings
from ebrain.config import KafkaSettings
from ebrain.inference.ports import Completion
from schemas import InferenceRequest

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

SEEDS = [
    "The gateway bridges MQTT and Kafka and acknowledges a device message only after Kafka has it. "
    "Questions go to Harriet Vance, harriet.vance@example.com, +1 312-555-0177.",
    "The cloud worker commits a Kafka offset only after its reply was acknowledged by every in-sync replica.",
]
REPLY = ("Q: When does the gateway acknowledge a device message?\n"
         "A: Only after Kafka has acknowledged the produce, so nothing is lost between the two brokers.\n"
         "Q: Who answers questions about it?\nA: Harriet Vance, at harriet.vance@example.com.\n")


class QAEngine:
    """Answers every request with two Q/A pairs (one repeating the seed's PII) and keeps the prompts it saw."""

    model_id = "qa-teacher"
    model_version = "1"

    def __init__(self) -> None:
        self.prompts: list[str] = []

    async def complete(self, request: InferenceRequest) -> Completion:
        self.prompts.append(request.prompt)
        reply = REPLY if "gateway" in request.prompt else REPLY.replace("gateway", "cloud worker")
        return Completion(text=reply, prompt_tokens=10, completion_tokens=40, mean_logprob=-0.1,
                          finish_reason="stop", latency_ms=1.0, model_id=self.model_id, model_version="1")

    async def aclose(self) -> None:
        return None


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def teacher(kafka_settings: KafkaSettings) -> AsyncIterator[QAEngine]:
    engine = QAEngine()
    settings = CloudSettings(kafka=kafka_settings, group_id="cloud-for-synth", session_timeout_ms=2_000,
                             heartbeat_interval_ms=500)
    async with CloudWorker(settings, engine=engine) as worker:
        await asyncio.wait_for(worker.ready.wait(), 60)
        yield engine


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return build_pipeline(IngestSettings())


async def test_synth_pairs_are_redacted_and_stored(
    kafka_settings: KafkaSettings, teacher: QAEngine, pipeline: Pipeline, tmp_path: Path
) -> None:
    settings = IngestSettings(kafka=kafka_settings, data_dir=tmp_path, synth_timeout_s=60)
    summary = await synthesize(settings, pipeline, SEEDS, pairs=2)
    assert summary["answered"] == 2
    assert summary["pairs"] == 4
    assert all("harriet.vance@example.com" not in p and "Harriet Vance" not in p for p in teacher.prompts)
    assert any("<EMAIL_ADDRESS_1>" in p for p in teacher.prompts)
    manifest = json.loads((tmp_path / "MANIFEST.json").read_text())
    assert manifest["records"] == summary["written"] >= 3
    assert {f["tenant"] for f in manifest["files"]} == {"synth"}
    stored = json.dumps(read_records(tmp_path), default=str)
    assert "Harriet" not in stored
    assert "harriet.vance@example.com" not in stored
    assert "<PERSON_1>, at <EMAIL_ADDRESS_1>" in stored
