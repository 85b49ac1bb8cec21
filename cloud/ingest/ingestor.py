"""From a batch of Kafka messages to one dataset commit: decode, join, build records, run the pipeline.

Transport-free (the Kafka adapter hands in (topic, key, value) triples), so tests and replays drive it directly.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cloud.ingest import metrics
from cloud.ingest.core.build import from_local, from_pair, is_teacher_answer, join_key
from cloud.ingest.core.join import Eviction, JoinKey, JoinWindow
from cloud.ingest.core.pipeline import Outcome, Pipeline
from cloud.ingest.core.ports import DuplicateIndex, Store
from cloud.ingest.core.records import Record
from schemas import Envelope, Escalation, InferenceResult, InvalidMessage, Reason, dead_letter, decode
from schemas.topics import kafka_downlink, kafka_uplink

log = logging.getLogger(__name__)

COMPONENT = "ingest"
RESULTS = kafka_uplink(InferenceResult.KIND)
ESCALATIONS = kafka_uplink(Escalation.KIND)
ANSWERS = kafka_downlink(InferenceResult.KIND)
TOPICS = (RESULTS, ESCALATIONS, ANSWERS)
_EXPECTED: dict[str, type] = {RESULTS: InferenceResult, ESCALATIONS: Escalation, ANSWERS: InferenceResult}


@dataclass(frozen=True, slots=True)
class Message:
    """One consumed Kafka record."""

    topic: str
    key: bytes | None
    value: bytes


@dataclass(slots=True)
class BatchResult:
    """The pipeline outcome plus the dead letters the adapter must publish before committing offsets."""

    outcome: Outcome
    dead_letters: list[Envelope[Any]] = field(default_factory=list)


class Ingestor:
    """Holds the join window and the record sequence; not thread-safe (one batch at a time)."""

    def __init__(self, pipeline: Pipeline, index: DuplicateIndex, store: Store, join: JoinWindow) -> None:
        self.pipeline = pipeline
        self.index = index
        self.store = store
        self.join = join
        self._seq = 0
        self._dropped: Counter[str] = Counter()
        self.handled = 0  # messages taken in, valid or not
        self._joined: list[tuple[str, JoinKey, Envelope[Any]]] = []

    def handle(self, messages: Sequence[Message], now: float) -> BatchResult:
        """Process one batch synchronously (CPU and disk: call it from a worker thread)."""
        records: list[Record] = []
        letters: list[Envelope[Any]] = []
        self._dropped = Counter()
        self._joined = []
        evicted = self.join.expire(now)
        self.handled += len(messages)
        for message in messages:
            try:
                envelope = _decode(message)
            except InvalidMessage as exc:
                letters.append(_letter(message, exc))
                metrics.MESSAGES.labels(message.topic, "invalid").inc()
                continue
            outcome = self._route(message.topic, envelope, now, records, evicted)
            metrics.MESSAGES.labels(message.topic, outcome).inc()
            if log.isEnabledFor(logging.DEBUG):
                log.debug("ingested", extra={"msg_id": envelope.id, "tenant": envelope.tenant,
                                             "device": envelope.device, "trace_id": envelope.trace_id,
                                             "topic": message.topic, "outcome": outcome})
        for eviction in evicted:
            metrics.JOIN_EVICTIONS.labels(eviction.side, eviction.reason).inc()
            self._dropped[f"unjoined_{eviction.side}"] += 1
        try:
            result = self.pipeline.process(records, self.index, self.store, self._dropped)
        except BaseException:
            self._unjoin(now)  # the batch will be re-read: its pairs must be able to form again
            raise
        _count(result)
        return BatchResult(result, letters)

    def _route(self, topic: str, envelope: Envelope[Any], now: float, records: list[Record],
               evicted: list[Eviction]) -> str:
        if topic == RESULTS:
            return self._add(from_local(envelope, self._next()), records)
        if topic == ANSWERS and not is_teacher_answer(envelope):
            return "skipped"
        side = "escalation" if topic == ESCALATIONS else "answer"
        pair, gone = self.join.offer(side, join_key(envelope), envelope, now)
        evicted.extend(gone)
        if pair is None:
            return "waiting"
        waited = ("answer", pair.answer) if side == "escalation" else ("escalation", pair.escalation)
        self._joined.append((waited[0], join_key(envelope), waited[1]))
        return self._add(from_pair(pair, self._next()), records)

    def _unjoin(self, now: float) -> None:
        """Put back the halves that had waited for partners arriving in a failed batch."""
        for side, key, envelope in self._joined:
            self.join.offer(side, key, envelope, now)

    def _add(self, built: Record | str, records: list[Record]) -> str:
        if isinstance(built, str):
            self._dropped[built] += 1
            return built
        records.append(built)
        return "record"

    def _next(self) -> int:
        self._seq += 1
        return self._seq


def _decode(message: Message) -> Envelope[Any]:
    envelope = decode(message.value)
    if not isinstance(envelope.data, _EXPECTED[message.topic]):
        raise InvalidMessage(Reason.TOPIC_MISMATCH, f"{envelope.type!r} on {message.topic!r}")
    return envelope


def _letter(message: Message, error: InvalidMessage) -> Envelope[Any]:
    tenant: str | None = None
    device: str | None = None
    with contextlib.suppress(ValueError):
        tenant, device = (message.key or b"").decode().split("/")
    try:
        return dead_letter(message.value, error, source_topic=message.topic, component=COMPONENT,
                           tenant=tenant, device=device)
    except ValueError:  # a key that is not a valid tenant/device
        return dead_letter(message.value, error, source_topic=message.topic, component=COMPONENT)


def _count(outcome: Outcome) -> None:
    metrics.RECORDS.inc(len(outcome.kept))
    for reason, n in outcome.dropped.items():
        metrics.DROPPED.labels(reason).inc(n)
    for q in outcome.quarantined:
        metrics.QUARANTINED.labels(q.reason).inc()
    for entity, n in outcome.pii.items():
        metrics.PII.labels(entity).inc(n)
