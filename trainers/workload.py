"""The flywheel's workload: enterprise maintenance questions the small edge model is unsure about.

Held out by subject, not by prompt: the evaluation asks the same kinds of questions about machines the training
round never saw, so a lower escalation rate afterwards is generalisation, not recall.
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
    "overhead crane", "centrifugal pump", "gas turbine",
)
HELDOUT_SUBJECTS = 4

# The teacher's instruction: short, complete answers that fit the edge's token budget.
TEACHER_SYSTEM = "You are a plant maintenance expert. Answer in two short sentences."


def prompts(subjects: tuple[str, ...]) -> list[str]:
    """Every template for every subject, subject-major."""
    return [t.format(x=s) for s in subjects for t in TEMPLATES]


def split() -> tuple[list[str], list[str]]:
    """(training workload, held-out workload): the last HELDOUT_SUBJECTS subjects are held out."""
    return prompts(SUBJECTS[:-HELDOUT_SUBJECTS]), prompts(SUBJECTS[-HELDOUT_SUBJECTS:])
