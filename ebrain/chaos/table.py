"""The README's Reliability table, rendered from `ebrain chaos run --json` result lines. Pure."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

HEADER = ("| scenario | fault held | messages | lost | duplicates | dead-lettered | deferred, then answered "
          "| refused at device | recovery |\n|---|---|---|---|---|---|---|---|---|")


def parse_lines(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The result objects among `lines` (JSON objects with a `scenario` key); other lines are skipped."""
    rows = []
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and "scenario" in obj:
            rows.append(obj)
    return rows


def row(result: dict[str, Any]) -> str:
    recovery = result.get("recovery_s")
    return (f"| {result['scenario']} | {result.get('fault_s', 0):g} s | {result['sent']} | {result['lost']} "
            f"| {result['duplicates']} | {result['dead_lettered']} | {result.get('ever_deferred', 0)} "
            f"| {result.get('refused', 0)} | {'-' if recovery is None else f'{recovery:.1f} s'} |")


def render(results: Iterable[dict[str, Any]]) -> str:
    """A Markdown table, one row per result, in the order given."""
    return "\n".join([HEADER, *(row(r) for r in results)])
