"""The thin adapter: events in, a rich Live dashboard on a terminal, or plain lines elsewhere."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Self

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from ebrain.dashboard.core import ROUTES, DemoState

Echo = Callable[[str], None]


def outcome_line(obj: dict[str, Any]) -> str:
    """One finished request as a plain line."""
    text = str(obj.get("text", "")).replace("\n", " ")[:70]
    why = obj.get("escalation_reason") or obj.get("reason", "")
    return (f"{obj['device']:>8} {obj['route']:>5} {obj['status']:>8} {float(obj['e2e_ms']):>8.0f} ms"
            f"  [{why}]  {text}")


def plain_line(event: dict[str, Any]) -> str | None:
    """The line the non-terminal view prints for an event (None: nothing to print)."""
    kind = event.get("kind")
    if kind == "outcome":
        return outcome_line(event)
    if kind == "step":
        return f"{event['name']}: {'...' if event['phase'] == 'start' else 'done'}"
    if kind == "proc" and event["state"] != "starting":
        rc = f" (rc {event['rc']})" if event.get("rc") is not None else ""
        return f"{event['name']}: {event['state']}{rc}"
    if kind == "note":
        return str(event["text"])
    return None


def _fmt(value: float | None, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def _headline(state: DemoState) -> Table:
    grid = Table.grid(padding=(0, 3))
    cells = [
        f"elapsed {state.now:.0f} s",
        f"answered {state.answered}/{state.expected}",
        " ".join(f"{r} {state.route_count(r)}" for r in ROUTES),
        f"{state.requests_per_s():.2f} req/s",
        f"p50 {state.latency(50):.0f} ms  p95 {state.latency(95):.0f} ms",
        f"dead letters {state.deadletters():.0f}",
        f"dataset records {state.total('ingest_records'):.0f}",
    ]
    grid.add_row(*cells)
    return grid


def _procs(state: DemoState) -> Table:
    table = Table(expand=False, box=None, header_style="bold")
    for column in ("process", "state", "msgs/s", "done", *ROUTES, "failed", "spool", "waiting"):
        table.add_column(column, justify="left" if column in {"process", "state"} else "right")
    for name, proc in state.procs.items():
        tally = state.devices.get(name)
        state_text = proc.state + (f" (restarts {proc.restarts})" if proc.restarts else "")
        style = {"ready": "green", "exited": "dim", "killed": "red", "restarting": "yellow"}.get(proc.state, "")
        row: list[str | Text] = [name, Text(state_text, style=style), _fmt(proc.msgs_per_s, ".1f")]
        if tally is None:
            row += [""] * 7
        else:
            row += [str(tally.done), str(tally.local), str(tally.cloud), str(tally.cache), str(tally.failed),
                    _fmt(state.device_metric(name, "spool")), _fmt(state.device_metric(name, "pending"))]
        table.add_row(*row)
    return table


def render(state: DemoState) -> RenderableType:
    """The whole dashboard for one state."""
    parts: list[RenderableType] = [_headline(state)]
    if state.step:
        parts.append(Spinner("dots", text=f"{state.step} ({state.now - state.step_since:.0f} s)"))
    if state.expected:
        bar = Table.grid(padding=(0, 1))
        bar.add_row(Text("requests"), ProgressBar(total=state.expected, completed=state.answered, width=40),
                    Text(f"{state.answered}/{state.expected}"))
        parts.append(bar)
    parts.append(_procs(state))
    parts.extend(Text(note, style="dim") for note in state.notes)
    return Group(*parts)


class Board:
    """Records every event (for the report), folds it into the state and shows it. Thread-safe: a terminal view
    renders from rich's refresh thread while events come in from the demo's thread.

    `events` is the run's record: it grows with the run, which the demo's deadline bounds (per second about one
    scrape per process, plus one event per request and per process change)."""

    def __init__(self, *, live: bool, echo: Echo, console: Console | None = None) -> None:
        self.state = DemoState()
        self.events: list[dict[str, Any]] = []
        self._echo, self._lock, self._started = echo, threading.Lock(), time.monotonic()
        self._live = Live(get_renderable=self._render, console=console, refresh_per_second=4,
                          redirect_stdout=False, redirect_stderr=False) if live else None

    def now(self) -> float:
        """Seconds since the board was made: the `t` of every event."""
        return round(time.monotonic() - self._started, 3)

    def expect(self, requests: int) -> None:
        with self._lock:
            self.state.expected = requests

    def emit(self, event: dict[str, Any]) -> None:
        """Record and show one event (`t` is filled in when missing)."""
        event = {"t": self.now(), **event}
        with self._lock:
            self.events.append(event)
            self.state.apply(event)
        if self._live is None and (line := plain_line(event)) is not None:
            self._echo(line)

    def note(self, text: str) -> None:
        self.emit({"kind": "note", "text": text})

    def _render(self) -> RenderableType:
        with self._lock:
            self.state.now = self.now()
            return render(self.state)

    def __enter__(self) -> Self:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
