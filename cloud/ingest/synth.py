"""`ebrain data synth`: ask the cloud model for Q/A pairs about seed documents, through the normal routing.

Seeds are redacted first (the model never sees their PII), sent as InferenceRequests on `ebrain.request`
(the cloud worker answers them like any device's request: same routing, cache and limits), and the answers
read from `ebrain.down.result` go through the same pipeline (redaction, quality, dedup) into the dataset.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from cloud.ingest.app import Dataset
from cloud.ingest.core.pipeline import Pipeline
from cloud.ingest.core.placeholders import PlaceholderBook
from cloud.ingest.core.records import Record, record_id
from cloud.ingest.core.synth import parse_pairs, prompt_for
from cloud.ingest.settings import IngestSettings
from ebrain.kafka import client_options, ensure_topics, producer_options
from schemas import InferenceRequest, InferenceResult, decode, encode, make, new_id
from schemas.topics import kafka_downlink, kafka_uplink

log = logging.getLogger(__name__)

REQUESTS = kafka_uplink(InferenceRequest.KIND)
ANSWERS = kafka_downlink(InferenceResult.KIND)


def redact_seeds(pipeline: Pipeline, seeds: Sequence[str]) -> list[str]:
    """Seed documents with their PII replaced, before any model reads them."""
    spans = pipeline.scanner.scan_batch(list(seeds))
    return [pipeline.anonymizer.anonymize(s, found, PlaceholderBook()) for s, found in zip(seeds, spans, strict=True)]


async def _tail_from_end(settings: IngestSettings) -> AIOKafkaConsumer:
    """A group-less consumer on every partition of the answers topic, positioned at the end (before we ask)."""
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **client_options(settings.kafka))
    await consumer.start()
    await consumer.topics()  # refreshes metadata: the topic may have been created a moment ago
    partitions = consumer.partitions_for_topic(ANSWERS) or set()
    tps = [TopicPartition(ANSWERS, p) for p in sorted(partitions)]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:
        await consumer.position(tp)
    return consumer


async def ask(settings: IngestSettings, documents: Sequence[str], pairs: int) -> dict[str, InferenceResult]:
    """Send one request per document; the answers by request id (missing ones timed out)."""
    await ensure_topics(settings.kafka, [REQUESTS, ANSWERS])
    consumer = await _tail_from_end(settings)
    producer = AIOKafkaProducer(**producer_options(settings.kafka))
    await producer.start()
    pending: dict[str, str] = {}
    answers: dict[str, InferenceResult] = {}
    try:
        for document in documents:
            request = InferenceRequest(request_id=new_id(), prompt=prompt_for(document, pairs), max_tokens=512,
                                       tags=("synth",))
            envelope = make(request, tenant=settings.synth_tenant, device=settings.synth_device)
            await producer.send_and_wait(REQUESTS, encode(envelope), key=envelope.key.encode())
            pending[request.request_id] = document
        deadline = time.monotonic() + settings.synth_timeout_s
        while pending.keys() - answers.keys() and time.monotonic() < deadline:
            polled = await consumer.getmany(timeout_ms=500)
            for record in (r for records in polled.values() for r in records):
                result = decode(record.value).data
                if isinstance(result, InferenceResult) and result.request_id in pending:
                    answers[result.request_id] = result
    finally:
        await producer.stop()
        await consumer.stop()
    return answers


def records_from(settings: IngestSettings, answers: dict[str, InferenceResult]) -> tuple[list[Record], int]:
    """Synth records from the answers, and how many answers held no parsable pair."""
    records: list[Record] = []
    unparsable = 0
    now = datetime.now(UTC)
    for request_id, result in sorted(answers.items()):
        found = parse_pairs(result.text) if result.status == "ok" else []
        unparsable += not found
        for i, (question, answer) in enumerate(found):
            rid = f"{request_id}-{i}"
            records.append(Record(
                record_id=record_id(settings.synth_tenant, settings.synth_device, rid, "synth"),
                tenant=settings.synth_tenant, device=settings.synth_device, kind="synth", request_id=rid,
                prompt=question, answer=answer, created=now, model_id=result.model_id,
                model_version=result.model_version, seq=len(records) + 1,
            ))
    return records, unparsable


async def synthesize(settings: IngestSettings, pipeline: Pipeline, seeds: Sequence[str], pairs: int = 3
                     ) -> dict[str, Any]:
    """Redact seeds, ask, parse, curate and store; returns a summary with the manifest id."""
    documents = await asyncio.to_thread(redact_seeds, pipeline, seeds)
    answers = await ask(settings, documents, pairs)
    records, unparsable = records_from(settings, answers)
    dataset = Dataset.open(settings)
    try:
        dropped = Counter({"no_answer": len(documents) - len(answers), "unparsable": unparsable})
        outcome = await asyncio.to_thread(pipeline.process, records, dataset.index, dataset.store, +dropped)
    finally:
        dataset.close()
    manifest = outcome.manifest or {}
    return {"seeds": len(seeds), "answered": len(answers), "pairs": len(records), "written": len(outcome.kept),
            "dropped": dict(outcome.dropped), "manifest_id": manifest.get("manifest_id")}
