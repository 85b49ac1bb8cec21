"""Composition root of ingestion: settings in; scanner, index, store, pipeline and the Kafka worker out."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cloud.ingest import metrics
from cloud.ingest.adapters.dedup import DedupIndex
from cloud.ingest.adapters.presidio import PresidioAnonymizer, PresidioScanner, load_nlp_engine
from cloud.ingest.adapters.store import DatasetStore
from cloud.ingest.core.join import JoinWindow
from cloud.ingest.core.pipeline import Pipeline
from cloud.ingest.ingestor import TOPICS, Ingestor, Message
from cloud.ingest.settings import IngestSettings
from ebrain.kafka import ensure_topics
from ebrain.lifecycle import Lifecycle
from schemas import Envelope

log = logging.getLogger(__name__)


def build_scanner(settings: IngestSettings, nlp_engine: Any | None = None) -> PresidioScanner:
    """The Presidio scanner the settings describe (loads the spaCy model unless one is passed in)."""
    return PresidioScanner(
        nlp_engine or load_nlp_engine(settings.spacy_model), ner_mode=settings.ner_mode,
        max_chars=settings.max_scan_chars, min_score=settings.pii_min_score, batch_size=settings.nlp_batch_size,
        extra_common=frozenset(w.lower() for w in settings.not_names),
    )


def build_pipeline(settings: IngestSettings, nlp_engine: Any | None = None) -> Pipeline:
    """Redaction and quality as the settings describe them."""
    return Pipeline(build_scanner(settings, nlp_engine), PresidioAnonymizer(), settings.quality.policy())


@dataclass
class Dataset:
    """The on-disk side: the dedup index and the Parquet store under `settings.data_dir`."""

    index: DedupIndex
    store: DatasetStore

    @classmethod
    def open(cls, settings: IngestSettings) -> Dataset:
        root = settings.data_dir
        return cls(DedupIndex(root / "state" / "dedup", threshold=settings.near_dup_threshold,
                              num_perm=settings.minhash_perm), DatasetStore(root))

    def close(self) -> None:
        self.index.close()
        self.store.close()


class IngestWorker(Lifecycle):
    """The streaming worker: `async with IngestWorker(settings) as w: await w.ready.wait()`."""

    def __init__(self, settings: IngestSettings, *, pipeline: Pipeline | None = None) -> None:
        self.settings = settings
        self.ready = asyncio.Event()
        self._pipeline = pipeline
        self._dataset: Dataset | None = None
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None
        self.ingestor: Ingestor | None = None
        self.last_manifest: dict[str, Any] | None = None
        self._batches = asyncio.Condition()

    async def start(self) -> None:
        """Create topics, load the model, open the dataset, join the consumer group, start the loop."""
        if self._task is not None:
            return
        from cloud.ingest.adapters.kafka import BatchConsumer  # noqa: PLC0415

        s = self.settings
        await ensure_topics(s.kafka, list(TOPICS))
        pipeline = self._pipeline
        if pipeline is None:
            pipeline = await asyncio.to_thread(build_pipeline, s)
        self._dataset = Dataset.open(s)
        self.ingestor = Ingestor(pipeline, self._dataset.index, self._dataset.store,
                                 JoinWindow(s.join_capacity, s.join_max_age_s))
        self._consumer = BatchConsumer(
            s.kafka, TOPICS, group_id=s.ingest_group_id, auto_offset_reset=s.auto_offset_reset,
            max_records=s.batch_max_records, timeout_ms=s.batch_timeout_ms,
            session_timeout_ms=s.session_timeout_ms, heartbeat_interval_ms=s.heartbeat_interval_ms, ready=self.ready)
        try:
            await self._consumer.start()
        except BaseException:
            await self.stop()
            raise
        self._task = asyncio.create_task(self._consumer.run(self._handle), name="ingest-loop")
        log.info("ingest worker started", extra={"group": s.ingest_group_id, "data_dir": str(s.data_dir)})

    async def _handle(self, batch: list[Message]) -> list[Envelope[Any]]:
        assert self.ingestor is not None
        started = time.monotonic()
        work = asyncio.ensure_future(asyncio.to_thread(self.ingestor.handle, batch, time.monotonic()))
        try:
            result = await asyncio.shield(work)
        except asyncio.CancelledError:
            await work  # the thread cannot be interrupted: let it finish before the dataset closes
            raise
        if batch:
            metrics.BATCH_SECONDS.observe(time.monotonic() - started)
        outcome = result.outcome
        if outcome.manifest is not None:
            self.last_manifest = outcome.manifest
            log.info("batch committed", extra={
                "messages": len(batch), "written": len(outcome.kept), "dropped": dict(outcome.dropped),
                "quarantined": len(outcome.quarantined), "manifest_id": outcome.manifest["manifest_id"]})
        async with self._batches:
            self._batches.notify_all()
        return result.dead_letters

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once `predicate()` holds, checking after every handled batch (wrap in a timeout)."""
        async with self._batches:
            await self._batches.wait_for(predicate)

    async def stop(self) -> None:
        """Let the batch in hand commit (up to `stop_timeout_s`; past it, cancel: it is re-read later), leave
        the group, close the files."""
        task, self._task = self._task, None
        self.ready.clear()
        if task is not None:
            self._consumer.request_stop()
            done, _ = await asyncio.wait({task}, timeout=self.settings.stop_timeout_s)
            if not done:
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        consumer, self._consumer = self._consumer, None
        try:
            if consumer is not None:
                await consumer.stop()
        finally:
            dataset, self._dataset = self._dataset, None
            if dataset is not None:
                dataset.close()
