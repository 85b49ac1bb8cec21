"""One chaos run: a paced workload through the stack, a fault held mid-run, then the ledger once it settles.

Timeline: the devices start (a fresh tenant per run, so runs on one stack never mix); once a quarter of the
requests went out the fault is injected, held `duration_s`, cleared; the devices keep sending throughout.
After the clearing, one deadline (`settle_s` plus the time the remaining sends take) bounds both the wait for
every request's outcome at the device and the reading back of Kafka until every sent id is accounted for and
every escalation answered; whatever is still unaccounted for then is `lost`.

`recovery_s` is the time from the moment the fault was cleared to the first message flowing end to end
again: for `uplink` scenarios, the first new record on the Kafka uplink topics (the run's traffic; sampled
every 0.25 s, so +-0.25 s); for `reply` scenarios, the Kafka timestamp of the first `ok` cloud reply produced
at or after the clearing. None when nothing flowed after it (the run then fails its check).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from ebrain.chaos import evidence
from ebrain.chaos.ledger import Ledger, Refusal, reconcile, recovery_s
from ebrain.chaos.scenarios import Scenario
from ebrain.chaos.stack import ChaosStack
from ebrain.config import KafkaSettings
from ebrain.kafka import client_options

SAMPLE_S = 0.25


@dataclass(frozen=True)
class RunConfig:
    devices: int = 3
    messages: int = 20
    duration_s: float | None = None  # None: the scenario's own
    settle_s: float = 90.0
    interval_s: float | None = None  # None: spread the sends over the fault


class Tally:
    """The devices' lines: ids sent, outcomes, refusals."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []  # everything the devices printed, for the run's record
        self.sent: list[str] = []
        self.outcomes: dict[str, dict[str, Any]] = {}
        self.done = asyncio.Event()
        self.changed = asyncio.Event()

    def on_line(self, _name: str, obj: dict[str, Any]) -> None:
        self.lines.append(obj)
        event = obj.get("event")
        if event == "sent":
            self.sent.append(obj["request_id"])
        elif event == "outcome":
            self.outcomes[obj["request_id"]] = obj
        elif event == "done":
            self.done.set()
        self.changed.set()

    def refusals(self) -> list[Refusal]:
        return [Refusal(rid, o.get("reason") or o["status"]) for rid, o in self.outcomes.items()
                if o["status"] in {"error", "rejected"}]

    async def wait(self, ok: Any, timeout_s: float) -> bool:
        async with asyncio.timeout(timeout_s):
            while not ok():
                self.changed.clear()
                await self.changed.wait()
        return True


class OffsetWatch:
    """Samples the summed end offsets of `topics` every SAMPLE_S, surviving a broker that comes and goes."""

    def __init__(self, kafka: KafkaSettings, topics: tuple[str, ...]) -> None:
        self._kafka, self._topics = kafka, topics
        self.samples: list[tuple[float, int]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> OffsetWatch:
        self._task = asyncio.create_task(self._run(), name="chaos-offset-watch")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            consumer = AIOKafkaConsumer(**client_options(self._kafka), request_timeout_ms=2000,
                                        connections_max_idle_ms=60_000)
            try:
                async with asyncio.timeout(5):
                    await consumer.start()
                parts = [TopicPartition(t, p) for t in self._topics
                         for p in (consumer.partitions_for_topic(t) or ())]
                while True:
                    async with asyncio.timeout(3):
                        ends = await consumer.end_offsets(parts)
                    self.samples.append((time.time(), sum(ends.values())))
                    await asyncio.sleep(SAMPLE_S)
            except Exception:  # broker down or slow: sample again later
                await asyncio.sleep(SAMPLE_S)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()

    def first_growth_after(self, cleared_at: float) -> float | None:
        before = [n for t, n in self.samples if t < cleared_at]
        base = before[-1] if before else None
        for t, n in self.samples:
            if t >= cleared_at and base is not None and n > base:
                return t
        return None


async def _ledger(stack: ChaosStack, tenant: str, tally: Tally) -> tuple[Ledger, Any]:
    records = await evidence.read_topics(stack.kafka)
    observed = evidence.observe(records, tenant, tally.refusals())
    return reconcile(tally.sent, observed), observed


def _settled(ledger: Ledger) -> bool:
    return ledger.lost == 0 and ledger.buckets["deferred"] == 0 and ledger.awaiting_reply == 0


async def run_scenario(stack: ChaosStack, scenario: Scenario, config: RunConfig = RunConfig()) -> dict[str, Any]:
    """Run `scenario` once on a running stack; returns the result line (see the module docstring)."""
    duration = scenario.duration_s if config.duration_s is None else config.duration_s
    interval = config.interval_s or min(1.0, max(0.05, (duration + 2) / max(1, config.messages * 0.75)))
    tenant = f"chaos-{uuid.uuid4().hex[:8]}"
    tally = Tally()
    fleet = stack.fleet(tenant, devices=config.devices, messages=config.messages, interval_s=interval,
                        reply_timeout_s=duration + config.settle_s + 60, on_line=tally.on_line)
    total = config.devices * config.messages
    started = time.time()
    try:
        async with OffsetWatch(stack.kafka, evidence.UPLINK_TOPICS) as watch:
            await fleet.start()
            await tally.wait(lambda: len(tally.sent) >= max(1, total // 4), 120)
            injected_at = time.time()
            try:
                await scenario.inject(stack)
                await asyncio.sleep(duration)
            finally:  # a run that fails half-way must not leave the shared stack broken
                cleared_at = time.time()  # the repair starts: a restart's own start-up counts as recovery
                await scenario.clear(stack)
            # One deadline for both waits: the devices' outcomes (an escalation that was lost never gets one)
            # and the ledger settling; what is unaccounted for then is lost.
            deadline = time.monotonic() + config.settle_s + config.messages * interval
            with contextlib.suppress(TimeoutError):
                await tally.wait(lambda: tally.done.is_set() and len(tally.outcomes) >= len(tally.sent),
                                 deadline - time.monotonic())
            ledger, observed = await _settle(stack, tenant, tally, deadline)
        if scenario.flow == "uplink":
            flowed = watch.first_growth_after(cleared_at)
            recovery = None if flowed is None else round(max(0.0, flowed - cleared_at), 2)
        else:
            recovery = recovery_s(cleared_at, (r.at_s for r in observed.replies if r.status == "ok"))
    finally:
        await fleet.stop()
        _record(stack, tenant, tally)
    answered_in_fault = sum(1 for r in observed.replies if r.status == "ok" and injected_at <= r.at_s <= cleared_at)
    return {"scenario": scenario.name, **ledger.to_json(), "recovery_s": recovery, "fault_s": duration,
            "answered_during_fault": answered_in_fault,
            "inject_after_s": round(injected_at - started, 2), "devices": config.devices,
            "messages_per_device": config.messages, "wall_s": round(time.time() - started, 1), "tenant": tenant}


async def _settle(stack: ChaosStack, tenant: str, tally: Tally, deadline: float) -> tuple[Ledger, Any]:
    while True:
        ledger, observed = await _ledger(stack, tenant, tally)
        if _settled(ledger) or time.monotonic() > deadline:
            return ledger, observed
        await asyncio.sleep(1.0)


def _record(stack: ChaosStack, tenant: str, tally: Tally) -> None:
    """The devices' lines of this run (sent, outcomes with reasons) under <workdir>/runs/, for post-mortems."""
    path = stack.workdir / "runs" / f"{tenant}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line) + "\n" for line in tally.lines))
