"""Readiness for Kafka consumers: an event set once every watched topic has partitions assigned to this process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener


class AssignmentWatch(ConsumerRebalanceListener):  # type: ignore[misc]
    """Sets `ready` once every watched topic has had partitions assigned (consumers commit per batch or message,
    so nothing is flushed on revocation)."""

    def __init__(self, topics: Iterable[str], ready: asyncio.Event) -> None:
        self._waiting = set(topics)
        self._ready = ready

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Nothing buffered across commits."""

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Tick off the topics that got partitions."""
        self._waiting -= {tp.topic for tp in assigned}
        if not self._waiting:
            self._ready.set()
