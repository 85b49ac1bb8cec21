"""`ebrain demo --scenario NAME`: a chaos scenario (ebrain.chaos) injected into the demo's live fleet.

The demo runs on the shared local stack (`ebrain stack up`), so only the scenarios that act on the fleet's own
processes can run here: breaking the brokers or the model server needs the private stack and fault proxies of
`ebrain chaos run`, and the demo says so instead of breaking services other programs may use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ebrain.dashboard.view import Board
    from ebrain.fleet import Fleet, FleetChild

# Chaos's child names -> the demo fleet's process names.
_CHILDREN = {"gateway": "gateway", "cloud": "cloud"}
DEMO_SCENARIOS = ("gateway-kill", "worker-kill")
INJECT_AFTER_S = 3.0  # let the devices' first requests get under way, so the fault meets traffic


class NotInDemo(LookupError):
    """The scenario needs a piece the demo's fleet does not have (a fault proxy, a private broker)."""


class FleetTarget:
    """The demo's Fleet as an ebrain.chaos Target: its gateway and cloud worker, nothing else."""

    edge_pid: int | None = None

    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet

    def child(self, name: str) -> FleetChild:
        if name not in _CHILDREN:
            raise NotInDemo(f"the demo cannot act on {name!r}")
        return self._fleet.child(_CHILDREN[name])

    def server(self, name: str) -> Any:
        raise NotInDemo(f"the demo does not own the {name!r} server (it runs on the shared stack)")

    def proxy(self, name: str) -> Any:
        raise NotInDemo(f"the demo has no {name!r} fault proxy")


def check(name: str) -> str | None:
    """Why `name` cannot run in the demo, or None if it can."""
    from ebrain.chaos import SCENARIOS  # noqa: PLC0415

    if name not in SCENARIOS:
        return f"unknown scenario {name!r}; `ebrain chaos list` lists them"
    if name not in DEMO_SCENARIOS:
        return (f"scenario {name!r} breaks a broker or the model server: run it on a private stack with "
                f"`ebrain chaos run {name}`; the demo can run {', '.join(DEMO_SCENARIOS)}")
    return None


def during(name: str, board: Board) -> Callable[[Fleet], Coroutine[Any, Any, None]]:
    """The `during` hook of run_demo that injects scenario `name`, holds it, and clears it."""
    from ebrain.chaos import SCENARIOS  # noqa: PLC0415

    scenario = SCENARIOS[name]

    async def run(fleet: Fleet) -> None:
        target = FleetTarget(fleet)
        await asyncio.sleep(INJECT_AFTER_S)
        board.emit({"kind": "chaos", "scenario": name, "phase": "inject"})
        board.note(f"chaos: {name}: {scenario.summary}")
        await scenario.inject(target)
        await asyncio.sleep(scenario.duration_s)
        await scenario.clear(target)
        board.emit({"kind": "chaos", "scenario": name, "phase": "cleared"})
        board.note(f"chaos: {name} cleared; the ledger at the end counts every request")

    return run
