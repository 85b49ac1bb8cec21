"""The built-in prompt set of the simulated devices, and a loader for user prompt files (JSON lines or text)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Prompt:
    text: str
    tags: tuple[str, ...] = ()
    max_tokens: int = 48


# Short factual questions a 135M model answers well, and tasks tagged for the cloud (the policy escalates them,
# carrying the local draft so the cloud can grade it and the trainer can learn from the pair).
BUILTIN: tuple[Prompt, ...] = (
    Prompt("What is the capital of France?"),
    Prompt("Write a detailed comparison of Kafka and MQTT for industrial IoT, with trade-offs.", ("complex",), 64),
    Prompt("What color is the sky on a clear day?"),
    Prompt("Summarize the causes of the First World War in three paragraphs.", ("long-form",), 64),
    Prompt("How many days are in a week?"),
    Prompt("Explain how a transformer neural network works, step by step.", ("complex",), 64),
    Prompt("What is the opposite of hot?"),
    Prompt("Draft a maintenance plan for a fleet of 500 wind turbines.", ("cloud",), 64),
)


def load(source: str) -> tuple[Prompt, ...]:
    """'builtin', or a file of JSON lines ({"prompt", "tags", "max_tokens"}) or plain text lines."""
    if source == "builtin":
        return BUILTIN
    prompts = []
    for line in Path(source).read_text().splitlines():
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            obj = json.loads(line)
            prompts.append(Prompt(obj["prompt"], tuple(obj.get("tags", ())), int(obj.get("max_tokens", 48))))
        else:
            prompts.append(Prompt(line.strip()))
    if not prompts:
        raise ValueError(f"no prompts in {source}")
    return tuple(prompts)
