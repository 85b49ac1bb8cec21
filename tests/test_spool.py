"""The on-disk spool against a small in-memory model: order, priority, TTL and the overflow policy."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ebrain.mqtt import MqttPublishError
from edge.forward import StoreAndForward
from edge.spool import BULK, CRITICAL, Spool, SpoolFullError
from schemas import InferenceResult, make

Op = tuple[str, int]
ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from([CRITICAL, BULK])),
        st.tuples(st.just("send"), st.integers(1, 3)),
        st.tuples(st.just("tick"), st.integers(1, 40)),
    ),
    max_size=60,
)


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@settings(max_examples=60, deadline=None)
@given(ops=ops, max_entries=st.integers(1, 6))
def test_spool_matches_the_model(ops: list[Op], max_entries: int) -> None:
    ttl = 50.0
    clock = _Clock()
    with tempfile.TemporaryDirectory() as tmp:
        spool = Spool(Path(tmp) / "s.db", max_entries=max_entries, ttl_s=ttl, clock=clock)
        model: list[tuple[int, int, float]] = []  # (priority, n, created)
        counter = 0
        for op, arg in ops:
            if op == "tick":
                clock.now += arg
                continue
            if op == "put":
                counter += 1
                _model_put(model, (arg, counter, clock.now), max_entries, spool)
                continue
            model[:] = [m for m in model if m[2] >= clock.now - ttl]
            expected = sorted(model, key=lambda m: (m[0], m[1]))[:arg]
            got = spool.head(arg)
            assert [(e.priority, int(e.msg_id)) for e in got] == [(m[0], m[1]) for m in expected]
            for entry, m in zip(got, expected, strict=True):
                spool.remove(entry.seq)
                model.remove(m)
        assert len(spool) == len(model)
        spool.close()


def _model_put(model: list[tuple[int, int, float]], item: tuple[int, int, float], cap: int, spool: Spool) -> None:
    priority, n, _ = item
    if len(model) >= cap:
        bulk = [m for m in model if m[0] == BULK]
        if bulk:
            model.remove(min(bulk, key=lambda m: m[1]))
        elif priority == CRITICAL:
            with pytest.raises(SpoolFullError):
                spool.put("t", b"x", str(n), priority)
            return
        else:
            assert spool.put("t", b"x", str(n), priority) is False
            return
    assert spool.put("t", b"x", str(n), priority) is True
    model.append(item)


def test_survives_reopen_in_order_and_counts_overflow(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = Spool(path, max_entries=3)
    spool.put("a/telemetry", b"t1", "t1", BULK)
    spool.put("a/result", b"r1", "r1")
    spool.put("a/escalation", b"e1", "e1")
    spool.put("a/result", b"r2", "r2")  # full: the oldest telemetry makes room
    assert spool.counters["dropped_overflow"] == 1
    assert spool.put("a/telemetry", b"t2", "t2", BULK) is False  # nothing left to evict: telemetry refused
    with pytest.raises(SpoolFullError):
        spool.put("a/result", b"r3", "r3")
    spool.close()

    reopened = Spool(path, max_entries=3)
    assert len(reopened) == 3
    entries = reopened.head(10)
    assert [e.msg_id for e in entries] == ["r1", "e1", "r2"]
    assert entries[0].payload == b"r1"
    mode = reopened._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    reopened.close()


class _Link:
    """A scripted link: `behaviour` per publish call ("ok", "hang", "refuse"), then "ok"."""

    def __init__(self, *behaviour: str) -> None:
        self.connected = True
        self.behaviour = list(behaviour)
        self.sent: list[bytes] = []

    async def wait_connected(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        return None

    async def publish(self, topic: str, payload: bytes, qos: int = 1, *, user_properties: Any = ()) -> None:
        what = self.behaviour.pop(0) if self.behaviour else "ok"
        if what == "hang":
            await asyncio.sleep(30)
        if what == "refuse":
            raise MqttPublishError("not authorised")
        self.sent.append(payload)


async def test_forwarder_spools_on_a_missing_puback_and_skips_what_the_broker_refuses(tmp_path: Path) -> None:
    def result(n: int) -> Any:
        payload = InferenceResult(request_id=f"r{n}", route="local", model_id="m", model_version="1", latency_ms=1)
        return make(payload, tenant="t", device="d", message_id=f"m{n}")

    link = _Link("hang", "refuse")  # r0: no PUBACK in time -> spool; drain of r0: refused by the broker
    async with StoreAndForward(link, Spool(tmp_path / "s.db"), publish_timeout_s=0.05) as forward:
        await forward.send(result(0))
        await forward.send(result(1))  # r0 still spooled: r1 must queue behind it
        assert forward.counters["spooled"] == 2
        assert await forward.flush(5)
        await forward.send(result(2))  # spool empty and link up: direct
    assert forward.counters["refused_by_broker"] == 1
    assert forward.counters["drained"] == 1
    assert forward.counters["direct"] == 1
    assert [b'"r1"' in raw for raw in link.sent] == [True, False]
