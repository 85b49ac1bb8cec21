"""An OpenAI-compatible chat-completions client (vLLM, llama.cpp server) over httpx, bounded per backend.

At most `max_concurrency` requests are in flight (enough to keep vLLM's continuous batching fed) and at
most `max_queue` wait for a slot; past that `EngineOverloaded` is raised at once so the router can go
elsewhere: nothing queues without bound.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import httpx

from cloud.backends.ports import BackendInvalid, BackendTimeout, EngineOverloaded, EngineUnavailable, Tier
from ebrain.inference.ports import Completion
from schemas import InferenceRequest

_OVERLOAD = frozenset({429, 503})


class OpenAIBackend:
    """One server at `base_url` (without /v1). `model` is the served model name sent in each request."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        model: str,
        tier: Tier,
        model_version: str = "1",
        max_concurrency: int = 8,
        max_queue: int = 16,
        logprobs: bool = False,
        api_key: str | None = None,
        extra_body: dict[str, Any] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._name = name
        self._tier: Tier = tier
        self._model = model
        self._model_version = model_version
        self._slots = asyncio.Semaphore(max_concurrency)
        self._limit = max_concurrency
        self._max_queue = max_queue
        self._waiting = 0
        self._logprobs = logprobs
        self._extra = dict(extra_body or {})
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        limits = httpx.Limits(max_connections=max_concurrency + 2, max_keepalive_connections=max_concurrency + 2)
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), headers=headers, limits=limits,
                                       timeout=httpx.Timeout(None, connect=5.0), transport=transport)

    @property
    def name(self) -> str:
        return self._name

    @property
    def tier(self) -> Tier:
        return self._tier

    @property
    def model_id(self) -> str:
        return self._model

    @property
    def model_version(self) -> str:
        return self._model_version

    @property
    def in_flight(self) -> int:
        """Requests holding or waiting for a slot."""
        return self._waiting

    async def complete(self, request: InferenceRequest, *, timeout_s: float) -> Completion:
        """One non-streaming chat completion within `timeout_s` (slot wait included)."""
        started = time.monotonic()
        body = self._body(request, stream=False)
        try:
            async with asyncio.timeout(timeout_s), self._slot():
                response = await self._http.post("/v1/chat/completions", json=body)
                _raise_for(response)
                data = response.json()
        except TimeoutError:
            raise BackendTimeout(f"{self._name}: no answer within {timeout_s:.2f}s") from None
        except httpx.TransportError as exc:
            raise EngineUnavailable(f"{self._name}: {type(exc).__name__}") from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EngineUnavailable(f"{self._name}: response is not JSON") from exc
        return self._completion(data, started)

    async def stream(self, request: InferenceRequest, *, timeout_s: float) -> AsyncIterator[str]:
        """Text pieces of a streamed (SSE) chat completion as they arrive; the whole stream within `timeout_s`."""
        body = self._body(request, stream=True)
        try:
            async with asyncio.timeout(timeout_s), self._slot(), \
                    self._http.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code >= 400:
                    await response.aread()
                    _raise_for(response)
                async for piece in _sse_pieces(response):
                    yield piece
        except TimeoutError:
            raise BackendTimeout(f"{self._name}: stream not done within {timeout_s:.2f}s") from None
        except httpx.TransportError as exc:
            raise EngineUnavailable(f"{self._name}: {type(exc).__name__}") from exc

    async def metrics(self) -> str | None:
        """The server's Prometheus text (vLLM's /metrics), or None when it has none or is unreachable."""
        try:
            response = await self._http.get("/metrics", timeout=2.0)
        except httpx.HTTPError:
            return None
        return response.text if response.status_code == 200 else None

    async def aclose(self) -> None:
        """Close the connection pool (idempotent)."""
        await self._http.aclose()

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        if self._waiting >= self._limit + self._max_queue:
            raise EngineOverloaded(f"{self._name}: local queue full ({self._max_queue} waiting)")
        self._waiting += 1
        try:
            async with self._slots:
                yield
        finally:
            self._waiting -= 1

    def _body(self, request: InferenceRequest, *, stream: bool) -> dict[str, Any]:
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages.append({"role": "user", "content": request.prompt})
        body: dict[str, Any] = {**self._extra, "model": self._model, "messages": messages,
                                "max_tokens": request.max_tokens, "temperature": request.temperature,
                                "stream": stream}
        if self._logprobs and not stream:
            body["logprobs"] = True
        return body

    def _completion(self, data: dict[str, Any], started: float) -> Completion:
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            usage = data.get("usage") or {}
            finish: Literal["stop", "length"] = "length" if choice.get("finish_reason") == "length" else "stop"
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise EngineUnavailable(f"{self._name}: malformed completion: {exc!r}") from exc
        return Completion(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            mean_logprob=_mean_logprob(choice.get("logprobs")),
            finish_reason=finish,
            latency_ms=(time.monotonic() - started) * 1000.0,
            model_id=self._model,
            model_version=self._model_version,
        )


def _raise_for(response: httpx.Response) -> None:
    """Map an HTTP error status to the error type the router acts on."""
    status = response.status_code
    if status < 400:
        return
    detail = response.text[:200]
    if status in _OVERLOAD:
        raise EngineOverloaded(f"HTTP {status}: {detail}")
    if status >= 500:
        raise EngineUnavailable(f"HTTP {status}: {detail}")
    raise BackendInvalid(f"HTTP {status}: {detail}")


async def _sse_pieces(response: httpx.Response) -> AsyncIterator[str]:
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        try:
            event = json.loads(payload)
            piece = (event["choices"][0].get("delta") or {}).get("content") if event.get("choices") else None
        except (json.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise EngineUnavailable(f"malformed stream event: {payload[:100]!r}") from exc
        if piece:
            yield piece


def _mean_logprob(logprobs: Any) -> float | None:
    try:
        values = [float(t["logprob"]) for t in (logprobs or {}).get("content") or []]
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    values = [v for v in values if math.isfinite(v)]
    return sum(values) / len(values) if values else None
