"""Measure a GGUF the way the edge runs it (llama.cpp): the numbers the evaluation gate compares.

- perplexity of the teacher answers given the held-out prompts (teacher forcing, answer tokens only);
- confidence: exp(mean token log-probability) of the model's own greedy answer, what the edge policy reads;
- escalation rate: the edge policy's verdict on those answers (`edge.core.policy.after_inference`);
- similarity of the model's answer to the teacher's: MiniLM embeddings (cloud.embed) when installed, else
  token-overlap F1;
- regression: mean confidence on prompts the edge already answered locally (they must not start escalating).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.core.policy import LocalAnswer, PolicyConfig, after_inference
from schemas import InferenceRequest
from trainers.core.gate import EvalMetrics
from trainers.core.pairs import token_overlap

log = logging.getLogger(__name__)

Similarity = Callable[[Sequence[str], Sequence[str]], list[float]]


@dataclass(frozen=True, slots=True)
class EvalItem:
    """A held-out prompt and the teacher's answer to it."""

    prompt: str
    reference: str


@dataclass(frozen=True, slots=True)
class EvalConfig:
    """How answers are generated for scoring."""

    max_tokens: int = 48
    n_ctx: int = 1024
    threads: int = 2
    policy: PolicyConfig = field(default_factory=PolicyConfig)


def overlap_similarity(candidates: Sequence[str], references: Sequence[str]) -> list[float]:
    """Token-overlap F1 per pair: the fallback when no embedding model is installed."""
    return [token_overlap(c, r) for c, r in zip(candidates, references, strict=True)]


def default_similarity() -> tuple[str, Similarity]:
    """MiniLM cosine (the cloud cache's ONNX model) when its wheels are installed, else token overlap."""
    try:
        from cloud.embed import MiniLM  # noqa: PLC0415

        model = MiniLM(threads=1)
    except (ImportError, FileNotFoundError) as exc:
        log.info("embeddings unavailable, similarity is token overlap", extra={"why": str(exc)})
        return "token_overlap", overlap_similarity

    def cosine(candidates: Sequence[str], references: Sequence[str]) -> list[float]:
        a, b = model.embed(list(candidates)), model.embed(list(references))
        return [float(x) for x in (a * b).sum(axis=1)]

    return "minilm", cosine


@dataclass(frozen=True, slots=True)
class Answers:
    """The model's answers to prompts, with the policy's view of each."""

    texts: list[str]
    confidences: list[float]
    escalated: list[bool]
    reasons: list[str] = field(default_factory=list)  # the policy's reason per prompt ('local:...' when kept)


async def _answers(engine: Any, prompts: Sequence[str], config: EvalConfig) -> Answers:
    texts: list[str] = []
    confidences: list[float] = []
    escalated: list[bool] = []
    reasons: list[str] = []
    for i, prompt in enumerate(prompts):
        request = InferenceRequest(request_id=f"eval-{i}", prompt=prompt, max_tokens=config.max_tokens)
        done = await engine.complete(request)
        local = LocalAnswer(done.text, done.mean_logprob, truncated=done.finish_reason == "length")
        decision = after_inference(request, local, config.policy)
        texts.append(done.text)
        confidences.append(decision.confidence or 0.0)
        escalated.append(decision.escalate)
        reasons.append(decision.reason)
    return Answers(texts, confidences, escalated, reasons)


def answer(model: Path, prompts: Sequence[str], config: EvalConfig) -> Answers:
    """Greedy answers from `model` through the edge's own engine, scored by the edge policy."""
    from ebrain.inference.llama import LlamaCppEngine  # noqa: PLC0415

    async def run() -> Answers:
        async with LlamaCppEngine(model, n_ctx=config.n_ctx, n_threads=config.threads, max_queue=1) as engine:
            return await _answers(engine, prompts, config)

    return asyncio.run(run())


def token_counter(model: Path) -> Callable[[str], int]:
    """Counts tokens of a text as `model`'s tokenizer does (no BOS, no special tokens); loads the vocabulary only."""
    from ebrain.inference.llama import load_llama  # noqa: PLC0415

    llm: Any = load_llama(model, vocab_only=True)
    return lambda text: len(llm.tokenize(text.encode(), add_bos=False, special=False))


def perplexity(model: Path, items: Sequence[EvalItem], config: EvalConfig) -> float:
    """exp(mean negative log-likelihood) of the reference answers after their chat-rendered prompts."""
    import numpy as np  # noqa: PLC0415

    from ebrain.inference.llama import LlamaCppEngine, load_llama  # noqa: PLC0415

    engine = LlamaCppEngine(model, n_ctx=64, n_threads=1, max_queue=0)  # only to render prompts
    llm: Any = load_llama(model, n_ctx=config.n_ctx, n_threads=config.threads, logits_all=True)
    nll, count = 0.0, 0
    try:
        for i, item in enumerate(items):
            prompt = engine.prompt_tokens(InferenceRequest(request_id=f"ppl-{i}", prompt=item.prompt))
            answer_tokens = [*llm.tokenize(item.reference.encode(), add_bos=False, special=False), llm.token_eos()]
            tokens = (prompt + answer_tokens)[: config.n_ctx]
            if len(tokens) <= len(prompt):
                continue
            llm.reset()
            llm.eval(tokens)
            logits = np.asarray(llm.scores[: len(tokens)], dtype=np.float64)
            for pos in range(len(prompt), len(tokens)):
                row = logits[pos - 1]
                peak = row.max()
                nll -= row[tokens[pos]] - peak - math.log(np.exp(row - peak).sum())
                count += 1
    finally:
        llm.close()
        asyncio.run(engine.aclose())
    return math.exp(nll / count) if count else math.inf


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def evaluate(model: Path, items: Sequence[EvalItem], regression: Sequence[str], config: EvalConfig,
             similarity: Similarity = overlap_similarity) -> EvalMetrics:
    """Every gate metric for one model on the held-out items and the regression prompts."""
    held = answer(model, [it.prompt for it in items], config)
    reg = answer(model, regression, config) if regression else None
    sims = similarity(held.texts, [it.reference for it in items]) if items else []
    metrics = EvalMetrics(
        perplexity=round(perplexity(model, items, config), 4),
        confidence=round(_mean(held.confidences) or 0.0, 4),
        similarity=round(m, 4) if (m := _mean(sims)) is not None else None,
        regression=round(r, 4) if reg and (r := _mean(reg.confidences)) is not None else None,
        escalation_rate=round(sum(held.escalated) / len(held.escalated), 4) if held.escalated else None,
    )
    log.info("evaluated", extra={"model": str(model), "perplexity": metrics.perplexity,
                                 "confidence": metrics.confidence, "escalation_rate": metrics.escalation_rate})
    return metrics
