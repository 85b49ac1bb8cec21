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


async def group_lag(kafka: KafkaSettings, group: str, topics: tuple[str, ...]) -> int:
    """Messages on `topics` the consumer group has not committed yet (read without joining the group)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: PLC0415 - the data/cloud extras have it

    from ebrain.kafka import client_options  # noqa: PLC0415

    # Not the admin client's OffsetFetch: Tansu answers it in a shape aiokafka 0.14 cannot decode.
    consumer = AIOKafkaConsumer(**client_options(kafka), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # metadata of every topic, so partitions_for_topic answers
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        ends = await consumer.end_offsets(partitions) if partitions else {}
        lag = 0
        for tp, end in ends.items():
            lag += max(0, end - ((await consumer.committed(tp)) or 0))
        return lag
    finally:
        await consumer.stop()


async def wait_drained(kafka: KafkaSettings, group: str, topics: tuple[str, ...], deadline_s: float) -> int:
    """Wait until the group has committed everything on `topics`; the lag left (0 when drained in time)."""
    loop = asyncio.get_running_loop()
    until = loop.time() + deadline_s
    lag = await group_lag(kafka, group, topics)
    while lag and loop.time() < until:
        await asyncio.sleep(0.5)  # the ingest worker commits once per batch (batch_timeout_ms, 1 s by default)
        lag = await group_lag(kafka, group, topics)
    return lag
