"""The flywheel's workload: enterprise maintenance questions the small edge model is unsure about.

Held out by subject, not by prompt: the evaluation asks the same kinds of questions (same templates, same kind
of machine, so the same distribution) about machines the training round never saw, so a lower escalation rate
afterwards is generalisation, not recall. Every HELDOUT_EVERY-th subject is held out (interleaved, so the held-out
machines are not a different tail of the list); training and held-out prompts are disjoint by construction.
"""

from __future__ import annotations

TEMPLATES = (
    "What is the recommended maintenance interval for a {x}?",
    "List two common causes of failure in a {x}.",
    "How should an operator safely shut down a {x}?",
    "What protective equipment is needed when servicing a {x}?",
)
SUBJECTS = (
    "hydraulic press", "conveyor belt", "industrial boiler", "air compressor", "CNC lathe", "forklift",
    "welding robot", "cooling tower", "diesel generator", "packaging machine", "injection molding machine",
    "overhead crane", "centrifugal pump", "gas turbine", "steam turbine", "electric motor", "gearbox",
    "heat exchanger", "industrial chiller", "paint booth", "laser cutter", "bottling line", "stamping press",
)
HELDOUT_EVERY = 4  # 5 of 23 subjects: 20 held-out prompts, 72 training prompts

# The teacher's instruction. Its answers are cut to whole sentences within the edge's budget (trainers.core.concise).
TEACHER_SYSTEM = "You are a plant maintenance expert. Answer in one or two short sentences."


def prompts(subjects: tuple[str, ...]) -> list[str]:
    """Every template for every subject, subject-major."""
    return [t.format(x=s) for s in subjects for t in TEMPLATES]


def heldout_subjects() -> tuple[str, ...]:
    """The machines the round never sees: every HELDOUT_EVERY-th subject, starting with the last of a group."""
    return SUBJECTS[HELDOUT_EVERY - 1::HELDOUT_EVERY]


def split() -> tuple[list[str], list[str]]:
    """(training workload, held-out workload), disjoint: held-out subjects never appear in training prompts."""
    held = heldout_subjects()
    return prompts(tuple(s for s in SUBJECTS if s not in held)), prompts(held)
