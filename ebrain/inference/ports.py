"""The inference port: anything that turns an InferenceRequest into a Completion."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from schemas import InferenceRequest


@dataclass(frozen=True, slots=True)
class Completion:
    """What an engine produced, with the numbers the escalation policy and the result need."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    # Mean natural-log probability of the generated tokens; None where the engine cannot say.
    mean_logprob: float | None
    finish_reason: Literal["stop", "length"]
    latency_ms: float
    model_id: str
    model_version: str


class EngineError(Exception):
    """Base of engine failures."""


class EngineOverloaded(EngineError):
    """Retryable: the engine's bounded queue is full; try later or elsewhere."""


class EngineUnavailable(EngineError):
    """Retryable elsewhere: the engine is down or failed on this request."""


class Engine(Protocol):
    """A loaded model. `complete` is safe to call concurrently; engines bound their own queue."""

    @property
    def model_id(self) -> str: ...

    @property
    def model_version(self) -> str: ...

    async def complete(self, request: InferenceRequest) -> Completion: ...

    async def aclose(self) -> None: ...
