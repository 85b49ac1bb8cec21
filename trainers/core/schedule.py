"""Periodic mode: when the next training round is due."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Due:
    """Whether a round should start now, and why (or why not)."""

    run: bool
    reason: str


def due(*, now: float, last_run: float | None, interval_s: float, records: int, records_at_last: int,
        every_records: int) -> Due:
    """Due when `every_records` (> 0) new records arrived since the last round, or `interval_s` passed.

    The first check is due at once when any records exist. Fewer records than at the last round (a rebuilt
    dataset) count from zero.
    """
    new = records - records_at_last if records >= records_at_last else records
    if last_run is None:
        return Due(records > 0, f"first round, {records} records")
    if every_records > 0 and new >= every_records:
        return Due(True, f"{new} new records >= {every_records}")
    if now - last_run >= interval_s:
        return Due(new > 0, f"interval {interval_s:.0f}s passed, {new} new records")
    return Due(False, f"{new} new records, next by time in {interval_s - (now - last_run):.0f}s")
