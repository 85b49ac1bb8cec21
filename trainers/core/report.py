"""The Markdown report of one training round: data, training, every gate check with its numbers, the verdict."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trainers.core.gate import EvalMetrics, GateDecision


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render(*, version: str, parent: str | None, data: Mapping[str, Any], training: Mapping[str, Any],
           current: EvalMetrics, candidate: EvalMetrics, decision: GateDecision, similarity: str) -> str:
    """One self-contained Markdown document."""
    verdict = "promote to canary" if decision.promote else "rejected"
    lines = [
        f"# Training round {version}", "",
        f"- parent: `{parent}`", f"- verdict: **{verdict}**",
        *(f"- {k}: {_fmt(v)}" for k, v in data.items()), "",
        "## Training", "", "| key | value |", "|---|---|",
        *(f"| {k} | {_fmt(v)} |" for k, v in training.items()), "",
        "## Evaluation (held-out split)", "",
        f"Similarity to the teacher: {similarity}.", "",
        "| metric | current | candidate |", "|---|---|---|",
    ]
    lines += [f"| {name} | {_fmt(getattr(current, name))} | {_fmt(getattr(candidate, name))} |"
              for name in ("perplexity", "confidence", "similarity", "regression", "escalation_rate")]
    lines += ["", "## Gate", "", "| check | current | candidate | bound | passed |", "|---|---|---|---|---|"]
    for c in decision.checks:
        passed = "yes" if c.passed else "**no**"
        note = f" ({c.note})" if c.note else ""
        lines.append(f"| {c.metric}{note} | {_fmt(c.current)} | {_fmt(c.candidate)} | {_fmt(c.bound)} | {passed} |")
    return "\n".join(lines) + "\n"
