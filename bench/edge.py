"""Edge agent overhead: tokens/s through the whole agent against plain `llama_cpp.Llama`, same run.

Each side runs in its own child process (so peak RSS is that side's alone, and neither inherits the other's
llama.cpp threads), on the same model file, prompts, threads, context and batch, greedy decoding:

- raw: `Llama.create_chat_completion(stream=True)` on a `Llama` loaded by the engine's loader
  (`ebrain.inference.llama.load_llama`: a plain `Llama()` crashes on AMX builds with quantized models);
  its tokens come from `usage` of a non-streamed call, its ttft from a separate streamed 1-token call;
- agent: `EdgeAgent.handle` (policy, envelope, codec, uplink) on `LlamaCppEngine`, streaming via `on_piece`;
  with `--uplink mqtt` through the real store-and-forward uplink to the broker on 127.0.0.1:1883.

tokens/s = generated tokens / wall time of the requests (prompt processing included on both sides); ttft is
the median time from request to first text piece. Rounds alternate raw, agent, raw, agent...; the best round
of each side counts. The last line is one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import typer

SYSTEM = "You are a helpful assistant. Answer briefly and accurately."


def _prompts(n: int) -> list[str]:
    from edge.prompts import BUILTIN  # noqa: PLC0415

    return [BUILTIN[i % len(BUILTIN)].text for i in range(n)]


def _peak_rss_mb() -> float:
    from edge.telemetry import peak_rss_mb  # noqa: PLC0415

    return round(peak_rss_mb(), 1)


def child_raw(model: Path, threads: int, n_ctx: int, n_batch: int, prompts: list[str], max_tokens: int
              ) -> dict[str, Any]:
    from ebrain.inference.llama import load_llama  # noqa: PLC0415

    llm = load_llama(model, n_threads=threads, n_ctx=n_ctx, n_batch=n_batch, use_mmap=True, seed=0)

    def chat(prompt: str, max_new: int, *, stream: bool) -> Any:
        messages: Any = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
        return llm.create_chat_completion(messages, max_tokens=max_new, temperature=0.0, stream=stream)

    def ttft_ms(prompt: str) -> float:
        start = time.perf_counter()
        for _chunk in chat(prompt, 1, stream=True):
            pass
        return (time.perf_counter() - start) * 1000

    def one(prompt: str) -> tuple[int, float]:
        start = time.perf_counter()
        out = chat(prompt, max_tokens, stream=False)  # non-streaming: usage counts tokens exactly
        return int(out["usage"]["completion_tokens"]), time.perf_counter() - start

    one(prompts[0])  # warm-up: page the weights in
    ttfts = [ttft_ms(p) for p in prompts]
    runs = [one(p) for p in prompts]
    return _totals([(tokens, seconds, ttft) for (tokens, seconds), ttft in zip(runs, ttfts, strict=True)])


async def _agent_runs(model: Path, threads: int, n_ctx: int, n_batch: int, prompts: list[str], max_tokens: int,
                      uplink: str) -> list[tuple[int, float, float]]:
    from ebrain.inference.llama import LlamaCppEngine  # noqa: PLC0415
    from edge.engines import SwappableEngine  # noqa: PLC0415
    from schemas import InferenceRequest  # noqa: PLC0415

    engine = SwappableEngine(await LlamaCppEngine.load(model, n_threads=threads, n_ctx=n_ctx, n_batch=n_batch,
                                                       use_mmap=True, model_id=model.stem))
    runs: list[tuple[int, float, float]] = []
    try:
        async with _agent(engine, uplink, threads) as agent:
            for i, prompt in enumerate([prompts[0], *prompts]):
                first: list[float] = []
                request = InferenceRequest(request_id=f"b{i}", prompt=prompt, system=SYSTEM, max_tokens=max_tokens)
                start = time.perf_counter()
                outcome = await agent.handle(request, on_piece=lambda _p, f=first: f.append(time.perf_counter())
                                             if not f else None)
                end = time.perf_counter()
                if i:  # the first is the warm-up
                    runs.append((outcome.result.completion_tokens, end - start, ((first or [end])[0] - start) * 1000))
    finally:
        await engine.aclose()
    return runs


def _agent(engine: Any, uplink: str, threads: int) -> Any:
    """The agent around `engine`: with an in-memory uplink, or the real MQTT store-and-forward stack."""
    import contextlib  # noqa: PLC0415

    from edge.agent import EdgeAgent  # noqa: PLC0415
    from edge.app import device_stack  # noqa: PLC0415
    from edge.core.policy import PolicyConfig  # noqa: PLC0415
    from edge.settings import EdgeSettings, TenantPolicy  # noqa: PLC0415
    from schemas import encode  # noqa: PLC0415

    never = PolicyConfig(escalation="never")  # every answer stays local: no cloud in this benchmark
    if uplink == "mqtt":
        state = Path(tempfile.mkdtemp(prefix="ebrain-bench-edge-"))
        settings = EdgeSettings(tenant="bench", device="bench-1", state_dir=state, n_threads=threads,
                                tenant_policies={"bench": TenantPolicy(escalation="never")}, drain_timeout_s=5)
        return device_stack(settings, engine, "bench-1")

    class MemoryUplink:
        async def send(self, envelope: Any) -> None:
            encode(envelope)  # the codec's cost is part of the agent's

    class NoDownlink:
        async def subscribe(self, topic_filter: str, qos: int = 1) -> None:
            return None

        async def messages(self) -> Any:
            await asyncio.Event().wait()
            yield  # pragma: no cover

    @contextlib.asynccontextmanager
    async def memory() -> Any:
        async with EdgeAgent(tenant="bench", device="bench-1", engine=engine, mqtt=NoDownlink(),
                             uplink=MemoryUplink(), policy=never, telemetry_interval_s=3600) as agent:
            yield agent

    return memory()


def _totals(runs: list[tuple[int, float, float]]) -> dict[str, Any]:
    tokens = sum(r[0] for r in runs)
    seconds = sum(r[1] for r in runs)
    return {"tokens": tokens, "seconds": round(seconds, 3), "tokens_per_s": round(tokens / seconds, 2),
            "ttft_ms": round(statistics.median(r[2] for r in runs), 1), "peak_rss_mb": _peak_rss_mb()}


def _child(side: str, model: Path, args: dict[str, Any]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.edge", side, str(model), json.dumps(args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=Path(__file__).resolve().parents[1])
    if proc.returncode != 0:
        raise RuntimeError(f"bench child {side} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def run_model(model: Path, *, threads: int, n_ctx: int, n_batch: int, prompts: int, max_tokens: int, rounds: int,
              uplink: str) -> dict[str, Any]:
    """Alternate raw and agent children `rounds` times; the best round of each side, and the overhead."""
    args = {"threads": threads, "n_ctx": n_ctx, "n_batch": n_batch, "prompts": _prompts(prompts),
            "max_tokens": max_tokens, "uplink": uplink}
    raw, agent = [], []
    for _ in range(rounds):
        raw.append(_child("raw", model, args))
        agent.append(_child("agent", model, args))
    best_raw = max(raw, key=lambda r: r["tokens_per_s"])
    best_agent = max(agent, key=lambda r: r["tokens_per_s"])
    overhead = 100.0 * (best_raw["tokens_per_s"] - best_agent["tokens_per_s"]) / best_raw["tokens_per_s"]
    return {
        "model": model.name, "agent_tokens_per_s": best_agent["tokens_per_s"],
        "raw_tokens_per_s": best_raw["tokens_per_s"], "overhead_pct": round(overhead, 2),
        "ttft_ms": best_agent["ttft_ms"], "raw_ttft_ms": best_raw["ttft_ms"],
        "peak_rss_mb": max(a["peak_rss_mb"] for a in agent), "raw_peak_rss_mb": max(r["peak_rss_mb"] for r in raw),
        "agent_rounds_tokens_per_s": [a["tokens_per_s"] for a in agent],
        "raw_rounds_tokens_per_s": [r["tokens_per_s"] for r in raw],
        "tokens_per_round": best_agent["tokens"],
    }


def register(app: typer.Typer) -> None:
    """Add `ebrain bench edge`."""

    @app.command("edge")
    def edge(
        models: str = typer.Option("smollm2", help="Comma-separated model specs (smollm2, gemma3-270m, a path)."),
        threads: int = typer.Option(0, min=0, help="llama.cpp threads (0: all cores)."),
        prompts: int = typer.Option(8, min=1, help="Prompts per round (the built-in set, cycled)."),
        max_tokens: int = typer.Option(64, min=1),
        rounds: int = typer.Option(2, min=1, help="Alternating raw/agent rounds; the best of each counts."),
        n_ctx: int = typer.Option(2048, min=128),
        n_batch: int = typer.Option(256, min=8),
        uplink: str = typer.Option("memory", help="'memory', or 'mqtt' for the real spool + broker on :1883."),
        json_only: bool = typer.Option(False, "--json", help="Print only the JSON line."),
    ) -> None:
        """Agent vs raw llama.cpp tokens/s, overhead, ttft and peak RSS; the last line is one JSON object."""
        from ebrain.models import resolve_model  # noqa: PLC0415

        state = Path(os.environ.get("EBRAIN_STATE_DIR", ".ebrain"))
        results = {}
        for spec in [m.strip() for m in models.split(",") if m.strip()]:
            path = Path(resolve_model(spec, state / "models"))
            results[spec] = run_model(path, threads=threads or os.cpu_count() or 1, n_ctx=n_ctx, n_batch=n_batch,
                                      prompts=prompts, max_tokens=max_tokens, rounds=rounds, uplink=uplink)
            if not json_only:
                typer.echo(f"{spec}: {results[spec]}", err=True)
        first = next(iter(results.values()))
        summary = {"bench": "edge", "threads": threads or os.cpu_count(), "uplink": uplink,
                   **{k: first[k] for k in ("agent_tokens_per_s", "raw_tokens_per_s", "overhead_pct", "ttft_ms",
                                            "peak_rss_mb")},
                   "models": results}
        typer.echo(json.dumps(summary))


def _main() -> None:
    side, model, raw_args = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    common = (model, raw_args["threads"], raw_args["n_ctx"], raw_args["n_batch"], raw_args["prompts"],
              raw_args["max_tokens"])
    if side == "raw":
        print(json.dumps(child_raw(*common)), flush=True)
        return
    result = _totals(asyncio.run(_agent_runs(*common, raw_args["uplink"])))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    _main()
