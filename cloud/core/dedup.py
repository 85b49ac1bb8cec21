"""A bounded idempotency set: the most recent message ids seen, so a redelivery is not answered twice."""

from __future__ import annotations

from collections import OrderedDict


class RecentIds:
    """An LRU set of at most `capacity` ids. Full: the least recently seen id is forgotten (counted).

    Kafka delivers at least once, so a redelivered envelope (same `id`) must find its id here. The bound
    trades memory for the window within which a duplicate is still recognised.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.duplicates = 0
        self.evicted = 0
        self._ids: OrderedDict[str, None] = OrderedDict()

    def claim(self, message_id: str) -> bool:
        """True the first time `message_id` is seen (it is now remembered); False for a duplicate."""
        if message_id in self._ids:
            self._ids.move_to_end(message_id)
            self.duplicates += 1
            return False
        self._ids[message_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
            self.evicted += 1
        return True

    def release(self, message_id: str) -> None:
        """Forget a claim whose reply never went out, so the redelivery is answered after all."""
        self._ids.pop(message_id, None)

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)
