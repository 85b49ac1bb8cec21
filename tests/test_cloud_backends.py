"""The OpenAI-compatible backend adapter and the router on real sockets: a switchable stub server as the
primary (503, 429, hang, down) and a real llama.cpp server (tiny model) as the CPU replica."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from cloud.backends import BackendInvalid, BackendTimeout, OpenAIBackend
from cloud.backends.ports import EngineOverloaded, EngineUnavailable
from cloud.core.routing import Limits
from cloud.router import Deferred, Failed, Router, RouterPolicy, Served
from cloud.testing import StubServer, llama_server
from ebrain.inference.ports import Completion
from ebrain.models import resolve_model
from schemas import InferenceRequest

pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] deps not installed")
pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


def _request(prompt: str = "hello there", max_tokens: int = 8) -> InferenceRequest:
    return InferenceRequest(request_id=f"r-{time.monotonic_ns()}", prompt=prompt, max_tokens=max_tokens)


@pytest.fixture(scope="module")
def llama_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    model = resolve_model("tiny", tmp_path_factory.mktemp("models"))
    with llama_server(model) as url:
        yield url


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stub() -> AsyncIterator[StubServer]:
    async with StubServer() as server:
        yield server


@pytest_asyncio.fixture(loop_scope="function")
async def primary(stub: StubServer) -> AsyncIterator[OpenAIBackend]:
    stub.mode, stub.metrics_text = "ok", ""
    backend = OpenAIBackend("vllm", stub.url, model="stub", tier="gpu", logprobs=True, max_concurrency=2,
                            max_queue=1)
    yield backend
    await backend.aclose()


@pytest_asyncio.fixture(loop_scope="function")
async def replica(llama_url: str) -> AsyncIterator[OpenAIBackend]:
    backend = OpenAIBackend("llama", llama_url, model="llama", tier="cpu", max_concurrency=1, max_queue=4)
    yield backend
    await backend.aclose()


def _router(*backends: tuple[OpenAIBackend, float], **policy: float) -> Router:
    return Router(list(backends), RouterPolicy(limits=Limits(overload_hold_s=0.5), breaker_threshold=2,
                                               breaker_cooldown_s=60, retry_base_s=0.01, retry_cap_s=0.05,
                                               retry_delay_s=1.0, **policy))  # type: ignore[arg-type]


async def test_llama_server_completes_and_streams(replica: OpenAIBackend) -> None:
    completion = await replica.complete(_request(), timeout_s=30)
    assert completion.completion_tokens > 0
    assert completion.model_id == "llama"
    pieces = [p async for p in replica.stream(_request(), timeout_s=30)]
    assert pieces
    assert "".join(pieces)


async def test_stub_maps_status_codes_to_error_types(stub: StubServer, primary: OpenAIBackend) -> None:
    completion = await primary.complete(_request("hi"), timeout_s=5)
    assert completion.text == "echo: hi"
    assert completion.mean_logprob == pytest.approx(-0.1)
    assert [p async for p in primary.stream(_request("a b"), timeout_s=5)] == ["echo: ", "a ", "b "]
    for mode, error in (("503", EngineOverloaded), ("429", EngineOverloaded), ("500", EngineUnavailable),
                        ("400", BackendInvalid)):
        stub.mode = mode
        with pytest.raises(error):
            await primary.complete(_request(), timeout_s=5)
    stub.mode = "hang"
    with pytest.raises(BackendTimeout):
        await primary.complete(_request(), timeout_s=0.3)


async def test_bounded_queue_refuses_past_its_bound(stub: StubServer, primary: OpenAIBackend) -> None:
    stub.mode = "hang"
    # 2 slots + 1 queued are admitted; the 4th is refused at once instead of queueing without bound.
    held = [asyncio.create_task(primary.complete(_request(), timeout_s=5)) for _ in range(3)]
    await _until(lambda: primary.in_flight == 3)
    with pytest.raises(EngineOverloaded, match="queue full"):
        await primary.complete(_request(), timeout_s=5)
    for task in held:
        task.cancel()
    await asyncio.gather(*held, return_exceptions=True)
    assert primary.in_flight == 0


async def test_unreachable_backend_is_unavailable() -> None:
    backend = OpenAIBackend("gone", "http://127.0.0.1:9", model="x", tier="gpu")
    with pytest.raises(EngineUnavailable):
        await backend.complete(_request(), timeout_s=5)
    await backend.aclose()


@pytest.mark.parametrize("mode", ["503", "hang", "down"])
async def test_fallback_to_cpu_replica(mode: str, stub: StubServer, primary: OpenAIBackend,
                                       replica: OpenAIBackend) -> None:
    stub.mode = mode
    if mode == "down":
        primary = OpenAIBackend("vllm", "http://127.0.0.1:9", model="x", tier="gpu")
    router = _router((primary, 0.5), (replica, 30.0))
    started = time.monotonic()
    outcome = await router.route(_request(), give_up_at=time.monotonic() + 30)
    assert isinstance(outcome, Served), outcome
    assert outcome.backend == "llama"
    assert outcome.reason.startswith("llama (cpu): fallback after vllm: ")
    expected = {"503": "overloaded", "hang": "timeout", "down": "unavailable"}[mode]
    assert f"vllm: {expected}" in outcome.reason
    assert outcome.scores["fallback"] == 1.0
    assert time.monotonic() - started < 20


async def test_breaker_opens_and_skips_a_failing_primary(stub: StubServer, primary: OpenAIBackend,
                                                         replica: OpenAIBackend) -> None:
    stub.mode = "500"
    router = _router((primary, 5.0), (replica, 30.0))
    for _ in range(2):
        assert isinstance(await router.route(_request(), time.monotonic() + 30), Served)
    before = stub.requests
    outcome = await router.route(_request(), time.monotonic() + 30)
    assert isinstance(outcome, Served)
    assert stub.requests == before  # open circuit: the primary was not even tried
    assert "vllm: circuit open" in outcome.reason


async def test_saturated_primary_from_vllm_metrics_is_skipped(stub: StubServer, primary: OpenAIBackend,
                                                              replica: OpenAIBackend) -> None:
    stub.metrics_text = ('vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.99\n'
                         'vllm:num_requests_waiting{engine="0",model_name="m"} 3.0\n')
    router = _router((primary, 5.0), (replica, 30.0))
    await router.scrape_once()
    before = stub.requests
    outcome = await router.route(_request(), time.monotonic() + 30)
    assert isinstance(outcome, Served)
    assert outcome.backend == "llama"
    assert "kv cache 99%" in outcome.reason
    assert stub.requests == before


async def test_both_saturated_defers_and_past_deadline_fails(stub: StubServer, primary: OpenAIBackend) -> None:
    stub.mode = "503"
    second = OpenAIBackend("llama", stub.url, model="stub", tier="cpu")
    router = _router((primary, 5.0), (second, 5.0), max_rounds=1)
    outcome = await router.route(_request(), time.monotonic() + 30)
    assert isinstance(outcome, Deferred)
    assert outcome.retry_after_s == 1.0
    assert "vllm: overloaded" in outcome.reason
    assert "llama: overloaded" in outcome.reason
    # Less time left than the retry topic's delay: fail now, with the reason.
    outcome = await router.route(_request(), time.monotonic() + 0.5)
    assert isinstance(outcome, Failed)
    assert outcome.reason.startswith("deadline exceeded")
    await second.aclose()


async def _until(condition: object, deadline_s: float = 5.0) -> None:
    end = time.monotonic() + deadline_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < end, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_stream_falls_back_before_the_first_piece(stub: StubServer, primary: OpenAIBackend,
                                                        replica: OpenAIBackend) -> None:
    router = _router((primary, 0.5), (replica, 30.0))
    assert [p async for p in router.stream(_request("x y"), time.monotonic() + 30)] == ["echo: ", "x ", "y "]
    stub.mode = "503"
    pieces = [p async for p in router.stream(_request(), time.monotonic() + 30)]
    assert pieces  # from the llama.cpp server
    stub.mode = "hang"
    second = OpenAIBackend("llama", stub.url, model="stub", tier="cpu")
    with pytest.raises(EngineOverloaded, match=r"vllm: timeout .*; llama: timeout"):
        [p async for p in _router((primary, 0.3), (second, 0.3)).stream(_request(), time.monotonic() + 30)]
    await second.aclose()


class _Broken(OpenAIBackend):
    async def complete(self, request: InferenceRequest, *, timeout_s: float) -> Completion:
        raise KeyError("adapter bug")


async def test_an_adapter_bug_counts_as_a_failure_and_falls_back(replica: OpenAIBackend) -> None:
    broken = _Broken("vllm", "http://127.0.0.1:9", model="x", tier="gpu")
    outcome = await _router((broken, 1.0), (replica, 30.0)).route(_request(), time.monotonic() + 30)
    assert isinstance(outcome, Served)
    assert "vllm: error ('adapter bug')" in outcome.reason
    await broken.aclose()
