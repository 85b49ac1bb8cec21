"""The routing adapter: tries backends in the order the pure core plans, within the request's deadline.

Overload (429/503, a full local queue) moves on to the next backend without blaming the first; failures
and timeouts count against its circuit breaker. When every backend refused, the core decides between an
in-process jittered backoff, a deferral to the retry topic, or failing with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from cloud import metrics
from cloud.backends.ports import Backend, BackendInvalid, BackendTimeout, EngineOverloaded, EngineUnavailable
from cloud.core.deadlines import backoff_s
from cloud.core.routing import BackendState, Breaker, Limits, Verdict, after_round, parse_vllm_metrics, plan
from ebrain.inference.ports import Completion
from ebrain.lifecycle import Lifecycle
from schemas import InferenceRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Served:
    completion: Completion
    backend: str
    reason: str
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Deferred:
    reason: str
    retry_after_s: float


@dataclass(frozen=True)
class Failed:
    reason: str


Outcome = Served | Deferred | Failed


@dataclass(frozen=True)
class RouterPolicy:
    limits: Limits = field(default_factory=Limits)
    breaker_threshold: int = 3
    breaker_cooldown_s: float = 5.0
    max_rounds: int = 2
    retry_base_s: float = 0.05
    retry_cap_s: float = 1.0
    # How long a deferred request waits on the retry topic before the next try.
    retry_delay_s: float = 2.0
    scrape_interval_s: float = 2.0


class Router(Lifecycle):
    """Backends in preference order (primary first), each with its attempt timeout in seconds.

    As a Lifecycle it owns one task scraping each backend's /metrics for saturation.
    """

    def __init__(
        self,
        backends: Sequence[tuple[Backend, float]],
        policy: RouterPolicy = RouterPolicy(),
        *,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not backends:
            raise ValueError("the router needs at least one backend")
        self.policy = policy
        self._backends = {b.name: b for b, _ in backends}
        self._timeouts = {b.name: t for b, t in backends}
        self.states = [BackendState(b.name, Breaker(policy.breaker_threshold, policy.breaker_cooldown_s))
                       for b, _ in backends]
        self._by_name = {s.name: s for s in self.states}
        self._clock = clock
        self._jitter = jitter
        self._sleep = sleep
        self._scraper: asyncio.Task[None] | None = None

    @property
    def primary(self) -> Backend:
        """The preferred backend (its model names the results when nothing answered)."""
        return self._backends[self.states[0].name]

    async def route(self, request: InferenceRequest, give_up_at: float) -> Outcome:
        """Serve `request` before `give_up_at` (monotonic seconds), or say why it is deferred or failed."""
        notes: list[str] = []
        rounds = attempts = 0
        while True:
            now = self._clock()
            planned = plan(self.states, self.policy.limits, now)
            _note(notes, (f"{name}: {why}" for name, why in planned.skipped))
            for name in planned.order:
                left = give_up_at - self._clock()
                if left <= 0 or not self._by_name[name].breaker.allow(self._clock()):
                    continue
                attempts += 1
                outcome = await self._attempt(name, request, min(self._timeouts[name], left), notes)
                if outcome is not None:
                    return _with_scores(outcome, attempts, rounds, notes, self._by_name[self.states[0].name])
            left = give_up_at - self._clock()
            delay = backoff_s(rounds, base_s=self.policy.retry_base_s, cap_s=self.policy.retry_cap_s,
                              jitter=self._jitter())
            verdict = after_round(remaining_s=left, backoff_s=delay, rounds=rounds,
                                  max_rounds=self.policy.max_rounds, retry_delay_s=self.policy.retry_delay_s)
            why = "; ".join(notes) or "no backend available"
            if verdict is Verdict.RETRY_NOW:
                rounds += 1
                metrics.RETRIES.labels("all_backends_busy").inc()
                await self._sleep(delay)
            elif verdict is Verdict.DEFER:
                return Deferred(f"all backends busy, retry in {self.policy.retry_delay_s:g}s: {why}",
                                self.policy.retry_delay_s)
            else:
                return Failed(f"deadline exceeded after {attempts} attempts: {why}")

    async def stream(self, request: InferenceRequest, give_up_at: float) -> AsyncIterator[str]:
        """Stream `request` from the first backend that yields a first piece before `give_up_at`.

        Fallback happens only before the first piece: once text went out, a failure ends the stream with
        the backend's error (the caller cannot unsend text). No backend: EngineOverloaded with the reasons.
        """
        notes: list[str] = []
        planned = plan(self.states, self.policy.limits, self._clock())
        _note(notes, (f"{name}: {why}" for name, why in planned.skipped))
        for name in planned.order:
            backend, state = self._backends[name], self._by_name[name]
            left = give_up_at - self._clock()
            if left <= 0 or not state.breaker.allow(self._clock()):
                continue
            pieces = backend.stream(request, timeout_s=min(self._timeouts[name], left))
            try:
                first = await anext(pieces)
            except StopAsyncIteration:
                first = ""
            except EngineOverloaded as exc:
                state.overloaded(self.policy.limits, self._clock())
                state.breaker.release()
                _record(name, "overloaded", notes, exc)
                continue
            except EngineUnavailable as exc:
                state.breaker.failure(self._clock())
                _record(name, "timeout" if isinstance(exc, BackendTimeout) else "unavailable", notes, exc)
                continue
            except BaseException:
                state.breaker.release()
                raise
            state.breaker.success()
            metrics.BACKEND_REQUESTS.labels(name, "ok").inc()
            if first:
                yield first
            async for piece in pieces:
                yield piece
            return
        raise EngineOverloaded("; ".join(notes) or "no backend available")

    async def _attempt(self, name: str, request: InferenceRequest, timeout_s: float,
                       notes: list[str]) -> Served | Failed | None:
        backend, state = self._backends[name], self._by_name[name]
        try:
            completion = await backend.complete(request, timeout_s=timeout_s)
        except EngineOverloaded as exc:
            state.overloaded(self.policy.limits, self._clock())
            state.breaker.release()
            _record(name, "overloaded", notes, exc)
        except BackendTimeout as exc:
            state.breaker.failure(self._clock())
            _record(name, "timeout", notes, exc)
        except EngineUnavailable as exc:
            state.breaker.failure(self._clock())
            _record(name, "unavailable", notes, exc)
        except BackendInvalid as exc:
            state.breaker.release()
            _record(name, "invalid", notes, exc)
            return Failed(f"invalid request for {name}: {exc}")
        except Exception as exc:  # a bug in an adapter: blame the backend, log it, try the next one
            log.exception("backend raised an unexpected error", extra={"backend": name})
            state.breaker.failure(self._clock())
            _record(name, "error", notes, exc)
        except BaseException:  # cancellation: no verdict on the backend
            state.breaker.release()
            raise
        else:
            state.breaker.success()
            metrics.BACKEND_REQUESTS.labels(name, "ok").inc()
            primary = self.states[0].name
            why = "primary" if name == primary and not notes else "fallback after " + "; ".join(notes)
            return Served(completion, name, f"{name} ({backend.tier}): {why}")
        finally:
            metrics.BREAKER_OPEN.labels(name).set(0 if state.breaker.opened_at is None else 1)
        return None

    async def scrape_once(self) -> None:
        """Read each backend's /metrics once into its saturation (backends without one are skipped)."""
        for state in self.states:
            text = await self._backends[state.name].metrics()
            if text and "vllm:" in text:
                state.saturation = parse_vllm_metrics(text, self._clock())
                metrics.BACKEND_KV_CACHE.labels(state.name).set(state.saturation.kv_cache_usage)
                metrics.BACKEND_WAITING.labels(state.name).set(state.saturation.waiting)

    async def start(self) -> None:
        """Start the /metrics scraper (idempotent)."""
        if self._scraper is None:
            self._scraper = asyncio.create_task(self._scrape_forever(), name="router-scraper")

    async def stop(self) -> None:
        """Stop the scraper and close the backends' connection pools (idempotent)."""
        task, self._scraper = self._scraper, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for backend in self._backends.values():
            await backend.aclose()

    async def _scrape_forever(self) -> None:
        while True:
            try:
                await self.scrape_once()
            except Exception:  # a scrape must never take the worker down
                log.warning("metrics scrape failed", exc_info=True)
            await asyncio.sleep(self.policy.scrape_interval_s)


def _note(notes: list[str], new: Iterable[str]) -> None:
    for item in new:
        if item not in notes:
            notes.append(item)


def _record(name: str, outcome: str, notes: list[str], exc: BaseException) -> None:
    metrics.BACKEND_REQUESTS.labels(name, outcome).inc()
    detail = str(exc).removeprefix(f"{name}: ")[:120]
    _note(notes, [f"{name}: {outcome} ({detail})" if detail else f"{name}: {outcome}"])


def _with_scores(outcome: Served | Failed, attempts: int, rounds: int, notes: list[str],
                 primary: BackendState) -> Served | Failed:
    if isinstance(outcome, Failed):
        return outcome
    scores = {"attempts": float(attempts), "backoff_rounds": float(rounds),
              "fallback": 0.0 if outcome.backend == primary.name else 1.0,
              "primary_kv_cache_usage": primary.saturation.kv_cache_usage,
              "primary_waiting": primary.saturation.waiting}
    return Served(outcome.completion, outcome.backend, outcome.reason, scores)
