"""Reads back what Kafka holds for one tenant: the ledger's evidence (the thin adapter around ebrain.chaos.ledger).

Every topic is read from its first offset to its end offset as of the call (no consumer group, nothing
committed), so reading twice is harmless and a run can poll until its ledger settles.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from ebrain.chaos.ledger import DeadLetter, Observed, Refusal, Reply, Uplink
from ebrain.config import KafkaSettings
from ebrain.kafka import client_options
from schemas import Escalation, InferenceRequest, InferenceResult, InvalidMessage, decode
from schemas.payloads import DeadLetter as DeadLetterPayload
from schemas.topics import KAFKA_DEADLETTER, KAFKA_RETRY, kafka_downlink, kafka_uplink

UPLINK_TOPICS = tuple(kafka_uplink(k) for k in ("result", "escalation", "request"))
REPLY_TOPIC = kafka_downlink("result")
TOPICS = (*UPLINK_TOPICS, REPLY_TOPIC, KAFKA_RETRY, KAFKA_DEADLETTER)
_REQUEST_ID = re.compile(rb'"request_id"\s*:\s*"([^"]{1,128})"')


async def read_topics(settings: KafkaSettings, topics: tuple[str, ...] = TOPICS,
                      timeout_s: float = 30.0) -> list[tuple[str, bytes, float]]:
    """(topic, value, timestamp in epoch seconds) of every record now in `topics` (missing topics skipped)."""
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False,
                                request_timeout_ms=int(timeout_s * 1000))
    await consumer.start()
    try:
        parts = [TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or ())]
        if not parts:
            await consumer.topics()  # refresh metadata once: partitions_for_topic reads the cached view
            parts = [TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or ())]
        if not parts:
            return []
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        await consumer.seek_to_beginning(*parts)
        out: list[tuple[str, bytes, float]] = []
        todo = {tp for tp in parts if ends[tp] > 0}
        async with asyncio.timeout(timeout_s):
            await _drain(consumer, todo, ends, out)
        return out
    finally:
        await consumer.stop()


async def _drain(consumer: AIOKafkaConsumer, todo: set[TopicPartition], ends: dict[TopicPartition, int],
                 out: list[tuple[str, bytes, float]]) -> None:
    while todo:
        batch = await consumer.getmany(*todo, timeout_ms=1000)
        for tp, records in batch.items():
            out.extend((tp.topic, r.value or b"", r.timestamp / 1000) for r in records)
        for tp in list(todo):
            if await consumer.position(tp) >= ends[tp]:
                todo.discard(tp)


def observe(records: list[tuple[str, bytes, float]], tenant: str, refusals: list[Refusal]) -> Observed:
    """The ledger's view of `tenant` in `records` (other tenants' messages are ignored)."""
    uplinks: list[Uplink] = []
    replies: list[Reply] = []
    retried: set[str] = set()
    dead: list[DeadLetter] = []
    for topic, value, at_s in records:
        if topic == KAFKA_DEADLETTER:
            letter = _dead_letter(value, tenant)
            if letter is not None:
                dead.append(letter)
            continue
        with contextlib.suppress(InvalidMessage):
            env = decode(value)
            if env.tenant != tenant:
                continue
            request_id = _request_id(env.data)
            if request_id is None:
                continue
            if topic in UPLINK_TOPICS:
                uplinks.append(Uplink(env.id, request_id, type(env.data).KIND, at_s))
            elif topic == REPLY_TOPIC and isinstance(env.data, InferenceResult):
                replies.append(Reply(env.id, request_id, env.data.status, at_s))
            elif topic == KAFKA_RETRY:
                retried.add(request_id)
    return Observed(uplinks, replies, frozenset(retried), dead, refusals)


def _request_id(data: Any) -> str | None:
    if isinstance(data, InferenceResult | InferenceRequest):
        return data.request_id
    if isinstance(data, Escalation):
        return data.request.request_id
    return None


def _dead_letter(value: bytes, tenant: str) -> DeadLetter | None:
    """A dead letter of `tenant` (by envelope, or by the tenant named in its raw bytes), with the request id."""
    try:
        env = decode(value)
    except InvalidMessage:
        return None
    if not isinstance(env.data, DeadLetterPayload):
        return None
    raw = base64.b64decode(env.data.raw_b64)
    if env.tenant != tenant and f'"tenant":"{tenant}"'.encode() not in raw.replace(b" ", b""):
        return None
    found = _REQUEST_ID.search(raw)
    return DeadLetter(env.data.reason, found.group(1).decode(errors="replace") if found else None)
