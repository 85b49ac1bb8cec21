"""Escalation policy: decide local or cloud from the request and from the local answer. Pure functions.

Every decision carries its reason and the scores it was made on, so results can say why.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields, replace
from typing import Literal

from schemas import InferenceRequest

# "auto": judge each request; "always": every request goes to the cloud (no local draft, to spare the device);
# "never": answers stay on the device whatever their confidence (e.g. data must not leave the site).
Escalation = Literal["auto", "always", "never"]

DEFAULT_REFUSALS = (
    r"\bi (?:do not|don't) know\b",
    r"\bi'?m not sure\b",
    r"\bi am not sure\b",
    r"\bi (?:cannot|can't|am unable to) (?:answer|help|provide)\b",
    r"\bas an ai\b",
    r"\bno idea\b",
)


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """Thresholds; `min_confidence` is compared with exp(mean token log-probability)."""

    max_local_prompt_chars: int = 2000
    cloud_tags: frozenset[str] = frozenset({"cloud", "complex", "long-form"})
    min_confidence: float = 0.35
    escalate_on_truncation: bool = True
    refusal_patterns: tuple[str, ...] = DEFAULT_REFUSALS
    escalation: Escalation = "auto"
    _compiled: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        compiled = tuple(re.compile(p, re.IGNORECASE) for p in self.refusal_patterns)
        object.__setattr__(self, "_compiled", compiled)

    def refuses(self, text: str) -> bool:
        return any(p.search(text) for p in self._compiled)


@dataclass(frozen=True, slots=True)
class TenantOverride:
    """One tenant's changes to the fleet-wide thresholds; None keeps the fleet value."""

    escalation: Escalation | None = None
    min_confidence: float | None = None
    max_local_prompt_chars: int | None = None
    cloud_tags: frozenset[str] | None = None
    escalate_on_truncation: bool | None = None


def for_tenant(base: PolicyConfig, override: TenantOverride | None) -> PolicyConfig:
    """The policy one tenant runs under: `base` with the override's non-None fields applied."""
    if override is None:
        return base
    changes = {f.name: getattr(override, f.name) for f in fields(override)}
    return replace(base, **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether to escalate, why ('local' reasons start with 'local:'), and the numbers behind it."""

    escalate: bool
    reason: str
    scores: dict[str, float]

    @property
    def confidence(self) -> float | None:
        return self.scores.get("confidence")


@dataclass(frozen=True, slots=True)
class LocalAnswer:
    """What the policy needs to know of a local completion."""

    text: str
    mean_logprob: float | None
    truncated: bool


def before_inference(request: InferenceRequest, config: PolicyConfig) -> Decision | None:
    """Escalate without drafting when the prompt cannot or must not be served locally; else None (draft first).

    A tenant that never escalates drafts even an over-long prompt: the engine then fails it clearly.
    """
    if config.escalation == "always":
        return Decision(escalate=True, reason="tenant:always", scores={"prompt_chars": float(len(request.prompt))})
    if config.escalation == "never":
        return None
    if len(request.prompt) > config.max_local_prompt_chars:
        scores = {"prompt_chars": float(len(request.prompt))}
        return Decision(escalate=True, reason="prompt_too_long", scores=scores)
    return None


def after_inference(request: InferenceRequest, answer: LocalAnswer, config: PolicyConfig) -> Decision:
    """Judge a local draft: escalate on cloud tags, low confidence, truncation or refusal phrasing."""
    confidence = math.exp(answer.mean_logprob) if answer.mean_logprob is not None else 0.0
    refusal = config.refuses(answer.text) or not answer.text.strip()
    scores = {
        "confidence": round(confidence, 4),
        "mean_logprob": round(answer.mean_logprob, 4) if answer.mean_logprob is not None else -math.inf,
        "truncated": float(answer.truncated),
        "refusal": float(refusal),
        "prompt_chars": float(len(request.prompt)),
    }
    if not math.isfinite(scores["mean_logprob"]):
        scores.pop("mean_logprob")
    if config.escalation != "auto":
        always = config.escalation == "always"
        return Decision(always, "tenant:always" if always else "local:tenant_never", scores)
    tagged = sorted(set(request.tags) & config.cloud_tags)
    if tagged:
        return Decision(True, f"cloud_tag:{tagged[0]}", scores)
    if refusal:
        return Decision(True, "refusal", scores)
    if answer.truncated and config.escalate_on_truncation:
        return Decision(True, "truncated", scores)
    if confidence < config.min_confidence:
        return Decision(True, "low_confidence", scores)
    return Decision(False, "local:confident", scores)
