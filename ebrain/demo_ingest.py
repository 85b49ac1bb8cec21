"""The demo's ingestion side: is it installed, has it read everything, how many records the dataset holds."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path

from ebrain.config import KafkaSettings

NEEDS = ("presidio_analyzer", "pyarrow", "datasketch", "aiokafka")


def missing_for_ingest() -> str | None:
    """None when the ingest worker can run here; else what to install."""
    missing = [name for name in NEEDS if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return f"ingest skipped: {', '.join(missing)} not installed (pip install -e '.[data]')"


def dataset_records(data_dir: Path) -> int:
    """Records the dataset's latest manifest names (0 before the first commit)."""
    manifest = data_dir / "MANIFEST.json"
    if not manifest.exists():
        return 0
    return int(json.loads(manifest.read_text())["records"])


Offsets = dict[tuple[str, int], int]  # (topic, partition) -> offset


async def offsets(kafka: KafkaSettings, topics: tuple[str, ...], group: str | None = None) -> tuple[Offsets, Offsets]:
    """End offsets of `topics` now, and what `group` has committed on them (read without joining the group)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: PLC0415 - the data/cloud extras have it

    from ebrain.kafka import client_options  # noqa: PLC0415

    # Not the admin client's OffsetFetch: Tansu answers it in a shape aiokafka 0.14 cannot decode.
    consumer = AIOKafkaConsumer(**client_options(kafka), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # metadata of every topic, so partitions_for_topic answers
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        ends = await consumer.end_offsets(partitions) if partitions else {}
        committed: Offsets = {}
        if group is not None:
            for tp in partitions:
                if (offset := await consumer.committed(tp)) is not None:
                    committed[(tp.topic, tp.partition)] = offset
        return {(tp.topic, tp.partition): end for tp, end in ends.items()}, committed
    finally:
        await consumer.stop()


def lag(ends: Offsets, committed: Offsets, since: Offsets) -> int:
    """Messages after `since` (the ends when the run began) that the group has not committed."""
    return sum(max(0, end - max(committed.get(tp, 0), since.get(tp, 0))) for tp, end in ends.items())


async def wait_drained(kafka: KafkaSettings, group: str, topics: tuple[str, ...], since: Offsets,
                       deadline_s: float) -> int:
    """Wait until the group has committed everything on `topics` after `since`; the lag left (0: in time)."""
    loop = asyncio.get_running_loop()
    until = loop.time() + deadline_s
    left = lag(*await offsets(kafka, topics, group), since)
    while left and loop.time() < until:
        await asyncio.sleep(0.5)  # the ingest worker commits once per batch (batch_timeout_ms, 1 s by default)
        left = lag(*await offsets(kafka, topics, group), since)
    return left
