"""The backend port and its errors, grouped by what the router should do about them.

- `EngineOverloaded` (429, 503, local queue full): alive but busy: try another backend, or later.
- `EngineUnavailable` (connection refused, 5xx, broken stream) and its `BackendTimeout`: count against the
  circuit breaker and try another backend.
- `BackendInvalid` (400/404/422): this request cannot be served; retrying elsewhere will not help.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal, Protocol

from ebrain.inference.ports import Completion, EngineError, EngineOverloaded, EngineUnavailable
from schemas import InferenceRequest

__all__ = ["Backend", "BackendInvalid", "BackendTimeout", "EngineOverloaded", "EngineUnavailable", "Tier"]

Tier = Literal["gpu", "cpu"]


class BackendTimeout(EngineUnavailable):
    """The backend did not answer within the attempt's time budget (hung or far too slow)."""


class BackendInvalid(EngineError, ValueError):
    """The backend refused the request itself (HTTP 4xx other than 429): not retryable anywhere."""


class Backend(Protocol):
    """One inference server. `complete` and `stream` raise only the errors above."""

    @property
    def name(self) -> str: ...

    @property
    def tier(self) -> Tier: ...

    @property
    def model_id(self) -> str: ...

    @property
    def model_version(self) -> str: ...

    async def complete(self, request: InferenceRequest, *, timeout_s: float) -> Completion: ...

    def stream(self, request: InferenceRequest, *, timeout_s: float) -> AsyncIterator[str]: ...

    async def metrics(self) -> str | None: ...

    async def aclose(self) -> None: ...
