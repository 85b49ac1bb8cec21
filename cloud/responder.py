"""From an uplink envelope to its reply: the Engine port behind a semaphore, retries and a deadline.

`Responder` is the seam the worker depends on; a later issue puts routing (vLLM or llama), a semantic
cache and rate limits behind it without the Kafka adapter changing.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from cloud import metrics
from cloud.core import answered, backoff_s, failed, remaining_s, request_of
from ebrain.inference.ports import Completion, Engine, EngineOverloaded, EngineUnavailable
from schemas import Envelope, InferenceResult

log = logging.getLogger(__name__)

RETRYABLE = (EngineOverloaded, EngineUnavailable)


class Responder(Protocol):
    """Answers one Escalation or InferenceRequest envelope; never raises for an engine failure.

    `attempt` counts passes through the retry topic (0: first delivery). A `deferred` result carries
    `scores["retry_after_ms"]`: the worker puts the request on the retry topic for another attempt then.
    """

    async def respond(self, envelope: Envelope[Any], *, attempt: int = 0) -> Envelope[InferenceResult]: ...


class GiveUp(Exception):
    """This request will get a `failed` result carrying `reason`."""


class EngineResponder:
    """Runs requests on one Engine: at most `max_concurrency` at once, retrying overload in the deadline."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_concurrency: int,
        default_deadline_ms: int,
        retry_base_s: float = 0.05,
        retry_cap_s: float = 2.0,
        jitter: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._engine = engine
        # The engine bounds its own queue and refuses past it; this keeps us below that bound.
        self._slots = asyncio.Semaphore(max_concurrency)
        self._default_deadline_ms = default_deadline_ms
        self._retry_base_s = retry_base_s
        self._retry_cap_s = retry_cap_s
        self._jitter = jitter
        self._sleep = sleep

    async def respond(self, envelope: Envelope[Any], *, attempt: int = 0) -> Envelope[InferenceResult]:
        """An `ok` result, or a `failed` one with the reason once retries or the deadline run out."""
        started = time.monotonic()
        try:
            completion = await self._complete(envelope, started)
            reply = answered(envelope, completion, latency_ms=_ms_since(started))
        except GiveUp as exc:
            reply = self._failed(envelope, str(exc), started)
        except ValueError as exc:
            # The completion does not fit the result schema (e.g. text past its cap): a result saying so
            # beats raising, which would redeliver the message and fail the same way forever.
            log.warning("engine output refused", extra={"msg_id": envelope.id, "error": _describe(exc)[:300]})
            reply = self._failed(envelope, f"invalid engine output: {type(exc).__name__}", started)
        metrics.INFERENCE_SECONDS.observe(time.monotonic() - started)
        return reply

    def _failed(self, envelope: Envelope[Any], reason: str, started: float) -> Envelope[InferenceResult]:
        return failed(envelope, reason, model_id=self._engine.model_id,
                      model_version=self._engine.model_version, latency_ms=_ms_since(started))

    async def _complete(self, envelope: Envelope[Any], started: float) -> Completion:
        request = request_of(envelope)
        give_up_at = started + remaining_s(envelope, self._default_deadline_ms, datetime.now(UTC))
        attempt = 0
        last: BaseException | None = None
        while True:
            left = give_up_at - time.monotonic()
            if left <= 0:  # a backoff sleep can overshoot: name the error that kept us retrying
                if last is not None:
                    raise GiveUp(f"{_describe(last)} (deadline reached after {attempt} attempts)") from last
                raise GiveUp(f"deadline exceeded before attempt {attempt + 1}")
            try:
                return await self._attempt(request, left)
            except TimeoutError:
                raise GiveUp(f"deadline exceeded during attempt {attempt + 1}") from None
            except RETRYABLE as exc:
                last = exc
                delay = backoff_s(attempt, base_s=self._retry_base_s, cap_s=self._retry_cap_s,
                                  jitter=self._jitter())
                attempt += 1
                if time.monotonic() + delay >= give_up_at:
                    raise GiveUp(f"{_describe(exc)} (deadline reached after {attempt} attempts)") from exc
                metrics.RETRIES.labels(type(exc).__name__).inc()
                log.info("engine busy, retrying", extra={"msg_id": envelope.id, "attempt": attempt,
                                                         "delay_s": round(delay, 3), "error": _describe(exc)})
                await self._sleep(delay)
            except Exception as exc:
                # Anything else is a request the engine cannot serve (a ValueError such as a prompt too
                # long for the context) or a bug: retrying will not help either.
                ctx = {"msg_id": envelope.id, "trace_id": envelope.trace_id, "error": _describe(exc)}
                log.log(logging.WARNING if isinstance(exc, ValueError) else logging.ERROR, "engine failed",
                        extra=ctx, exc_info=not isinstance(exc, ValueError))
                raise GiveUp(f"engine error: {_describe(exc)}") from exc

    async def _attempt(self, request: Any, timeout_s: float) -> Completion:
        # Waiting for a slot counts against the deadline, as the requester sees it.
        async with asyncio.timeout(timeout_s), self._slots:
            return await self._engine.complete(request)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _ms_since(started: float) -> float:
    return (time.monotonic() - started) * 1000.0
