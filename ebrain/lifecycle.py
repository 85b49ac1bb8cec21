"""The shape every long-running component shares: idempotent `start`/`stop`, used as an async context manager."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Lifecycle:
    """Base for components that own tasks or connections: `async with X(...) as x:` starts and stops them."""

    async def start(self) -> None:
        """Acquire resources and start tasks; a second call does nothing."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Cancel and await every task, release every resource; a second call does nothing."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
