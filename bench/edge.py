"""Edge agent overhead: tokens/s through the whole agent against plain `llama_cpp.Llama`, same run.

Each side runs in its own child process (so peak RSS is that side's alone, and neither shares the other's
llama.cpp threads), on the same model file, prompts, threads, context and batch, greedy decoding:

- raw: `Llama.create_chat_completion` on a `Llama` loaded by the engine's loader
  (`ebrain.inference.llama.load_llama`: a plain `Llama()` crashes on AMX builds with quantized models);
  tokens from the call's `usage`; ttft from a separate streamed 1-token pass at the end;
- agent: `EdgeAgent.handle` (policy, envelope, codec, uplink) on `LlamaCppEngine`, streaming via `on_piece`
  (ttft = first piece); with `--uplink mqtt` through the real store-and-forward uplink to 127.0.0.1:1883.

Both children stay loaded, and the parent hands them the same prompt in turn (raw then agent, agent then raw on
the next), so background load on a shared machine hits both sides alike instead of one whole round. (The idle
side's OpenMP threads spin only briefly before sleeping; OMP_WAIT_POLICY=PASSIVE was tried and made the raw side
up to 15x slower on the tiny model, so it is not set.) tokens/s = generated tokens / wall time of the requests
(prompt processing included on both sides). `overhead_pct` is the median over prompts of the paired overhead
(1 - agent rate / raw rate for the same prompt, back to back); `overhead_total_pct` compares the totals and
swings with background load (`load_avg_1m` says how busy the machine was). The last line is one JSON object.
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
from typing import IO, Any

import typer

SYSTEM = "You are a helpful assistant. Answer briefly and accurately."


def _prompts(n: int) -> list[str]:
    from edge.prompts import BUILTIN  # noqa: PLC0415

    return [BUILTIN[i % len(BUILTIN)].text for i in range(n)]


def _peak_rss_mb() -> float:
    from edge.telemetry import peak_rss_mb  # noqa: PLC0415

    return round(peak_rss_mb(), 1)


def _serve(handle: Any) -> None:
    """Child loop: one JSON command per stdin line, one JSON answer per stdout line."""
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "quit":
            print(json.dumps({"peak_rss_mb": _peak_rss_mb()}), flush=True)
            return
        print(json.dumps(handle(command)), flush=True)


def child_raw(model: Path, args: dict[str, Any]) -> None:
    from ebrain.inference.llama import load_llama  # noqa: PLC0415

    llm = load_llama(model, n_threads=args["threads"], n_ctx=args["n_ctx"], n_batch=args["n_batch"],
                     use_mmap=True, seed=0)

    def chat(prompt: str, max_new: int, *, stream: bool) -> Any:
        messages: Any = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
        return llm.create_chat_completion(messages, max_tokens=max_new, temperature=0.0, stream=stream)

    def handle(command: dict[str, Any]) -> dict[str, Any]:
        start = time.perf_counter()
        if command["op"] == "ttft":
            for _chunk in chat(command["prompt"], 1, stream=True):
                pass
            return {"ttft_ms": (time.perf_counter() - start) * 1000}
        out = chat(command["prompt"], args["max_tokens"], stream=False)  # usage counts tokens exactly
        return {"tokens": int(out["usage"]["completion_tokens"]), "seconds": time.perf_counter() - start}

    _serve(handle)


def child_agent(model: Path, args: dict[str, Any]) -> None:
    asyncio.run(_agent_main(model, args))


async def _agent_main(model: Path, args: dict[str, Any]) -> None:
    from ebrain.inference.llama import LlamaCppEngine  # noqa: PLC0415
    from edge.engines import SwappableEngine  # noqa: PLC0415
    from schemas import InferenceRequest  # noqa: PLC0415

    engine = SwappableEngine(await LlamaCppEngine.load(
        model, n_threads=args["threads"], n_ctx=args["n_ctx"], n_batch=args["n_batch"], use_mmap=True,
        model_id=model.stem))
    loop = asyncio.get_running_loop()
    try:
        async with _agent(engine, args["uplink"], args["threads"]) as agent:
            count = 0

            async def handle(command: dict[str, Any]) -> dict[str, Any]:
                nonlocal count
                count += 1
                request = InferenceRequest(request_id=f"b{count}", prompt=command["prompt"], system=SYSTEM,
                                           max_tokens=1 if command["op"] == "ttft" else args["max_tokens"])
                first: list[float] = []
                start = time.perf_counter()
                outcome = await agent.handle(request, on_piece=lambda _p: first.append(time.perf_counter()))
                end = time.perf_counter()
                return {"tokens": outcome.result.completion_tokens, "seconds": end - start,
                        "ttft_ms": ((first[0] if first else end) - start) * 1000}

            await asyncio.to_thread(_serve, lambda c: asyncio.run_coroutine_threadsafe(handle(c), loop).result())
    finally:
        await engine.aclose()


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


class _Child:
    """A bench child process answering one JSON command per line."""

    def __init__(self, side: str, model: Path, args: dict[str, Any]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.edge", side, str(model), json.dumps(args)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1],
        )
        self.ask(None)  # the ready line: the model is loaded

    def ask(self, command: dict[str, Any] | None) -> dict[str, Any]:
        stdin, stdout = self._pipes()
        if command is not None:
            stdin.write(json.dumps(command) + "\n")
            stdin.flush()
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"bench child exited with {self.proc.wait()}")
        return dict(json.loads(line))

    def close(self) -> float:
        peak = float(self.ask({"op": "quit"})["peak_rss_mb"])
        self.proc.wait(timeout=60)
        return peak

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        return self.proc.stdin, self.proc.stdout


def run_model(model: Path, *, threads: int, n_ctx: int, n_batch: int, prompts: int, max_tokens: int, rounds: int,
              uplink: str) -> dict[str, Any]:
    """Paired runs: each prompt to both children in turn, `rounds` times; totals, overhead, ttft, peak RSS."""
    args = {"threads": threads, "n_ctx": n_ctx, "n_batch": n_batch, "max_tokens": max_tokens, "uplink": uplink}
    texts = _prompts(prompts)
    raw, agent = _Child("raw", model, args), _Child("agent", model, args)
    sides = {"raw": raw, "agent": agent}
    runs: dict[str, list[dict[str, Any]]] = {"raw": [], "agent": []}
    try:
        for side in sides.values():  # warm-up: page the weights in
            side.ask({"op": "gen", "prompt": texts[0]})
        for r in range(rounds):
            for i, prompt in enumerate(texts):
                order = ("raw", "agent") if (r + i) % 2 == 0 else ("agent", "raw")
                for name in order:
                    runs[name].append(sides[name].ask({"op": "gen", "prompt": prompt}))
        ttft = {name: statistics.median(sides[name].ask({"op": "ttft", "prompt": p})["ttft_ms"] for p in texts)
                for name in sides}
    finally:
        peaks = {name: child.close() for name, child in sides.items()}
    rate = {name: sum(x["tokens"] for x in runs[name]) / sum(x["seconds"] for x in runs[name]) for name in sides}
    paired = [100.0 * (1 - (a["tokens"] / a["seconds"]) / (r["tokens"] / r["seconds"]))
              for r, a in zip(runs["raw"], runs["agent"], strict=True) if r["tokens"] and a["tokens"]]
    return {
        "model": model.name, "agent_tokens_per_s": round(rate["agent"], 2), "raw_tokens_per_s": round(rate["raw"], 2),
        # The median of per-prompt pairs (same prompt, back to back): robust to load that comes and goes.
        "overhead_pct": round(statistics.median(paired), 2) if paired else None,
        "overhead_total_pct": round(100.0 * (rate["raw"] - rate["agent"]) / rate["raw"], 2),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "ttft_ms": round(ttft["agent"], 1), "raw_ttft_ms": round(ttft["raw"], 1),
        "peak_rss_mb": peaks["agent"], "raw_peak_rss_mb": peaks["raw"],
        "requests_per_side": len(runs["raw"]), "tokens_per_side": sum(x["tokens"] for x in runs["agent"]),
    }


def register(app: typer.Typer) -> None:
    """Add `ebrain bench edge`."""

    @app.command("edge")
    def edge(
        models: str = typer.Option("smollm2", help="Comma-separated model specs (smollm2, gemma3-270m, a path)."),
        threads: int = typer.Option(0, min=0, help="llama.cpp threads (0: all cores)."),
        prompts: int = typer.Option(8, min=1, help="Prompts per round (the built-in set, cycled)."),
        max_tokens: int = typer.Option(64, min=1),
        rounds: int = typer.Option(2, min=1, help="Passes over the prompts (each prompt to both sides in turn)."),
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
    side, model, args = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    (child_raw if side == "raw" else child_agent)(model, args)


if __name__ == "__main__":
    _main()
