"""The evaluation gate: promote a candidate only if it beats the current model by configured margins.

Both models are measured on the same held-out split and the same regression set. Perplexity is lower-is-better,
confidence (exp of the mean token log-probability on held-out prompts, what the escalation policy reads),
similarity to the teacher and the regression score are higher-is-better. A metric that is missing on either
side is not judged (and says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class EvalMetrics:
    """One model's numbers on the held-out split and the regression set."""

    perplexity: float
    confidence: float
    similarity: float | None = None  # to the teacher answers (embeddings, or token overlap when none)
    regression: float | None = None  # mean score on the regression set
    escalation_rate: float | None = None  # share of held-out prompts the edge policy would escalate


@dataclass(frozen=True, slots=True)
class GateConfig:
    """Margins a candidate must clear. Relative for perplexity, absolute for the rest."""

    min_perplexity_gain: float = 0.02  # candidate ppl <= current ppl * (1 - gain)
    min_confidence_gain: float = 0.0  # candidate confidence >= current + gain
    max_similarity_drop: float = 0.02  # candidate similarity >= current - drop
    max_regression_drop: float = 0.0  # the regression set must not get worse


@dataclass(frozen=True, slots=True)
class Check:
    """One comparison with both numbers, the bound it was held to and whether it passed."""

    metric: str
    current: float | None
    candidate: float | None
    bound: float | None
    passed: bool
    note: str = ""


@dataclass(frozen=True, slots=True)
class GateDecision:
    """Promote or not, with every check behind it (what the report prints)."""

    promote: bool
    checks: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def reasons(self) -> list[str]:
        """The failed checks as short sentences; empty when promoted."""
        return [f"{c.metric}: {c.candidate} vs bound {c.bound} (current {c.current})" for c in self.checks
                if not c.passed]


def _higher(metric: str, current: float | None, candidate: float | None, bound_delta: float) -> Check:
    if current is None or candidate is None:
        return Check(metric, current, candidate, None, passed=True, note="not measured on both")
    bound = current + bound_delta
    return Check(metric, current, candidate, round(bound, 6), passed=candidate >= bound)


def decide(current: EvalMetrics, candidate: EvalMetrics, config: GateConfig) -> GateDecision:
    """Every margin must hold for a promotion; the perplexity gain is required, the others guard regressions."""
    ppl_bound = current.perplexity * (1.0 - config.min_perplexity_gain)
    checks = (
        Check("perplexity", current.perplexity, candidate.perplexity, round(ppl_bound, 6),
              passed=candidate.perplexity <= ppl_bound),
        _higher("confidence", current.confidence, candidate.confidence, config.min_confidence_gain),
        _higher("similarity", current.similarity, candidate.similarity, -config.max_similarity_drop),
        _higher("regression", current.regression, candidate.regression, -config.max_regression_drop),
    )
    return GateDecision(promote=all(c.passed for c in checks), checks=checks)
