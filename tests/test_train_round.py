"""A whole training round on the tiny model, on CPU, in seconds: GGUF -> transformers -> LoRA SFT + DPO ->
merge -> llama.cpp converter -> quantize -> llama.cpp loads and answers; the gate promotes a better candidate
and refuses a worse one; the registry records both."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")

from ebrain.inference.llama import LlamaCppEngine
from ebrain.models.tiny import write_tiny_llama
from schemas import InferenceRequest
from trainers.adapters.export import file_type
from trainers.adapters.hf import load_gguf
from trainers.adapters.registry import Registry
from trainers.adapters.train import TrainConfig, TrainingDivergedError, dpo
from trainers.core.pairs import DpoPair
from trainers.round import NotEnoughDataError, RoundResult, run_round
from trainers.settings import GateSettings, TrainerSettings, TrainKnobs

TOOLS = Path(__file__).resolve().parents[1] / ".ebrain" / "tools"  # the converter is fetched once, kept


def _rows(n: int, *, noise: bool = False) -> list[dict[str, object]]:
    rng = random.Random(7)
    rows: list[dict[str, object]] = []
    for i in range(n):
        answer = ("".join(rng.choice("qzxjvkw#@!") for _ in range(24)) if noise
                  else f"The answer is {i % 4}.")
        rows.append({"record_id": f"r{i}", "kind": "distill", "prompt": f"Question {i}: what is {i % 4}?",
                     "answer": answer, "draft": "zz", "agreement": 0.0})
    rows += [{"record_id": f"l{i}", "kind": "local", "prompt": f"Say {i}.", "answer": f"{i}"} for i in range(2)]
    return rows


def _settings(tmp: Path, base: Path, *, lr: float, steps: int) -> TrainerSettings:
    return TrainerSettings(
        model=str(base), registry_dir=tmp / "registry", tools_dir=TOOLS, models_dir=tmp / "models",
        quantization="q8_0", convert_outtype="f32", heldout_fraction=0.25, min_records=8, eval_max_tokens=12,
        train=TrainKnobs(max_steps=steps, learning_rate=lr, batch_size=4, lora_r=8, lora_alpha=16, max_length=64,
                         dpo_steps=2),
        gate=GateSettings(min_perplexity_gain=0.02, min_confidence_gain=-1.0, max_similarity_drop=1.0,
                          max_regression_drop=1.0),
    )


@pytest.fixture(scope="module")
def rounds(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainerSettings, RoundResult, RoundResult]:
    tmp = tmp_path_factory.mktemp("train")
    base = write_tiny_llama(tmp / "tiny.gguf")
    good = run_round(_settings(tmp, base, lr=1e-2, steps=12), _rows(24), data_manifest_id="m-good")
    registry = Registry(tmp / "registry")
    registry.set_status(good.version, "promoted", reason="test")
    # Noise answers, judged on a fixed golden set of real answers against the promoted good model.
    golden = [r for r in _rows(32) if r["kind"] == "distill"][24:]
    bad = run_round(_settings(tmp, base, lr=1e-2, steps=12), _rows(24, noise=True), data_manifest_id="m-bad",
                    heldout=golden)
    return _settings(tmp, base, lr=1e-2, steps=12), good, bad


def test_a_better_candidate_passes_the_gate(rounds: tuple[TrainerSettings, RoundResult, RoundResult]) -> None:
    _, good, _ = rounds
    assert good.promoted, good.decision.reasons
    assert good.candidate.perplexity < good.current.perplexity * 0.98
    assert good.training["sft_steps"] == 12
    assert good.training["sft_loss_last"] < good.training["sft_loss_first"]
    assert good.training["dpo_steps"] == 2  # teacher answers over disagreeing drafts


def test_a_worse_candidate_is_not_promoted(rounds: tuple[TrainerSettings, RoundResult, RoundResult]) -> None:
    settings, _, bad = rounds
    assert not bad.promoted
    assert bad.candidate.perplexity > bad.current.perplexity
    failed = [c.metric for c in bad.decision.checks if not c.passed]
    assert "perplexity" in failed
    registry = Registry(settings.registry_dir)
    assert registry.entry(bad.version)["status"] == "rejected"
    assert registry.load()["current"] == "v1"  # a rejected candidate never becomes current


def test_registry_and_report(rounds: tuple[TrainerSettings, RoundResult, RoundResult]) -> None:
    settings, good, _ = rounds
    data = json.loads((settings.registry_dir / "registry.json").read_text())
    assert [(v["version"], v["parent"], v["status"]) for v in data["versions"]] == [
        ("v0", None, "base"), ("v1", "v0", "promoted"), ("v2", "v1", "rejected")]
    v1 = data["versions"][1]
    assert v1["data_manifest_id"] == "m-good"
    assert len(v1["sha256"]) == 64
    assert v1["size_bytes"] == (settings.registry_dir / "v1" / "model.gguf").stat().st_size
    assert v1["metrics"]["candidate"]["perplexity"] == good.candidate.perplexity
    report = (settings.registry_dir / "v1" / "report.md").read_text()
    assert "## Gate" in report
    assert "| perplexity |" in report
    assert "promote to canary" in report


def test_exported_gguf_loads_in_llama_cpp_and_answers(
        rounds: tuple[TrainerSettings, RoundResult, RoundResult]) -> None:
    settings, good, _ = rounds

    async def ask() -> str:
        path = settings.registry_dir / good.version / "model.gguf"
        async with LlamaCppEngine(path, n_ctx=256, n_threads=2) as engine:
            done = await engine.complete(InferenceRequest(request_id="q", prompt="Question 99: what is 3?",
                                                          max_tokens=16))
            return done.text

    text = asyncio.run(ask())
    # The random base emits random bytes; after 12 steps the trained model starts the learned "The answer is".
    assert text.startswith("The"), text  # 1 in 256^3 for the random base


def test_too_few_records_is_refused(tmp_path: Path) -> None:
    base = write_tiny_llama(tmp_path / "tiny.gguf")
    with pytest.raises(NotEnoughDataError, match="need 8"):
        run_round(_settings(tmp_path, base, lr=1e-2, steps=1), _rows(3), data_manifest_id=None)


def test_dpo_drifting_from_its_reference_aborts_with_the_reason(tmp_path: Path) -> None:
    base = load_gguf(write_tiny_llama(tmp_path / "tiny.gguf"), threads=1)
    prefs = [DpoPair(f"r{i}", f"What is {i}?", f"It is {i}.", "no idea", "teacher") for i in range(8)]
    with pytest.raises(TrainingDivergedError, match=r"KL .* exceeds 50.0") as err:
        dpo(base, prefs, TrainConfig(max_steps=8, learning_rate=1e-2, batch_size=4, max_length=64))
    assert err.value.divergence.step < 7  # stopped early, not at the end


def test_export_is_the_configured_type_and_keeps_the_fine_tune(
        rounds: tuple[TrainerSettings, RoundResult, RoundResult]) -> None:
    settings, good, _ = rounds
    assert file_type(settings.registry_dir / good.version / "model.gguf") == 7  # Q8_0, as configured
    assert "quantization_warning" not in good.training  # an F32 base: any grid starts from the trained weights
    assert TrainerSettings().quantization == "q8_0"  # finer than the Q4_1 edge base (trainers.core.quant)
