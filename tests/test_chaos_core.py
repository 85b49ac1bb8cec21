"""The chaos ledger (pure), the result table, the registry, and the fault proxy on real sockets."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ebrain.chaos.ledger import BUCKETS, DeadLetter, Observed, Refusal, Reply, Uplink, reconcile, recovery_s
from ebrain.chaos.proxy import FaultProxy
from ebrain.chaos.scenarios import SCENARIOS
from ebrain.chaos.table import parse_lines, render

REQUIRED = {"gateway-kill", "worker-kill", "kafka-down", "mqtt-restart", "backend-down", "backend-503",
            "backend-hang", "redis-down", "edge-offline", "edge-disk-full"}


def test_every_kind_of_evidence_lands_in_its_bucket() -> None:
    obs = Observed(
        uplinks=[Uplink("e1", "local", "result"), Uplink("e2", "asked", "escalation"),
                 Uplink("e3", "waiting", "escalation"), Uplink("e4", "later", "escalation")],
        replies=[Reply("r1", "asked", "ok"), Reply("r2", "later", "deferred")],
        retried=frozenset({"later"}),
        dead_letters=[DeadLetter("invalid_json", "bad"), DeadLetter("too_large")],
        refusals=[Refusal("full", "OperationalError: database or disk is full")],
    )
    ledger = reconcile(["local", "asked", "waiting", "later", "bad", "full", "gone"], obs)
    assert ledger.buckets == {"answered": 1, "deferred": 1, "in_kafka": 2, "dead_lettered": 1, "refused": 1,
                              "lost": 1}
    assert ledger.lost_ids == ("gone",)
    assert ledger.awaiting_reply == 1  # "waiting": an escalation in Kafka with no answer yet
    assert ledger.ever_deferred == 1
    assert ledger.reasons == {"dead_letter:invalid_json": 1, "dead_letter:too_large": 1,
                              "refused:OperationalError: database or disk is full": 1}


def test_a_deferred_request_answered_later_is_answered_and_counted_as_deferred_once() -> None:
    obs = Observed(uplinks=[Uplink("e", "x", "escalation")],
                   replies=[Reply("r1", "x", "deferred"), Reply("r2", "x", "ok")], retried=frozenset({"x"}))
    ledger = reconcile(["x"], obs)
    assert ledger.buckets["answered"] == 1
    assert ledger.ever_deferred == 1
    assert ledger.lost == 0


def test_duplicates_are_repeated_envelope_ids_on_the_uplink_and_among_replies() -> None:
    obs = Observed(uplinks=[Uplink("e1", "a", "result"), Uplink("e1", "a", "result"), Uplink("e1", "a", "result"),
                            Uplink("e2", "b", "escalation")],
                   replies=[Reply("r", "b", "ok"), Reply("r", "b", "ok")])
    ledger = reconcile(["a", "b"], obs)
    assert ledger.duplicates == 3
    assert ledger.lost == 0


def test_ids_nobody_sent_are_unknown_not_accounted() -> None:
    ledger = reconcile(["a"], Observed(uplinks=[Uplink("e", "stranger", "result")]))
    assert ledger.lost == 1
    assert ledger.unknown == 1


def test_failed_replies_are_final_answers_and_counted() -> None:
    ledger = reconcile(["a"], Observed(replies=[Reply("r", "a", "failed")]))
    assert ledger.buckets["answered"] == 1
    assert ledger.failed_replies == 1


_ids = st.lists(st.text("abcdef", min_size=1, max_size=3), max_size=30)


@given(sent=_ids, seen=_ids, replied=_ids, statuses=st.lists(st.sampled_from(["ok", "failed", "deferred"])))
def test_buckets_partition_the_sent_ids(sent: list[str], seen: list[str], replied: list[str],
                                        statuses: list[str]) -> None:
    obs = Observed(uplinks=[Uplink(f"u{i}", r, "escalation") for i, r in enumerate(seen)],
                   replies=[Reply(f"r{i}", r, s) for i, (r, s) in enumerate(zip(replied, statuses, strict=False))])
    ledger = reconcile(sent, obs)
    unique = set(sent)
    assert sum(ledger.buckets.values()) == ledger.sent == len(unique)
    assert set(ledger.buckets) == set(BUCKETS)
    assert ledger.lost == len(unique - set(seen) - {r.request_id for r in obs.replies})
    assert ledger.duplicates == 0  # every envelope id here is distinct


@given(cleared=st.floats(0, 1e6), events=st.lists(st.floats(0, 1e6), max_size=20))
def test_recovery_is_the_first_flow_at_or_after_the_clearing(cleared: float, events: list[float]) -> None:
    got = recovery_s(cleared, events)
    after = [e for e in events if e >= cleared]
    if not after:
        assert got is None
    else:
        assert got == round(min(after) - cleared, 2)
        assert got >= 0


def test_the_registry_has_every_scenario_the_issue_names() -> None:
    assert set(SCENARIOS) >= REQUIRED
    assert SCENARIOS["kafka-down"].duration_s == 15
    assert SCENARIOS["edge-offline"].duration_s == 60
    assert all(s.flow in {"uplink", "reply"} for s in SCENARIOS.values())


def test_table_renders_result_lines_and_skips_other_output() -> None:
    result = {"scenario": "gateway-kill", "fault_s": 2.0, "sent": 24, "lost": 0, "duplicates": 1,
              "dead_lettered": 0, "ever_deferred": 0, "refused": 0, "recovery_s": 1.234}
    rows = parse_lines(["starting", json.dumps(result), json.dumps({"event": "x"}), "[1]"])
    text = render(rows)
    assert text.splitlines()[2] == "| gateway-kill | 2 s | 24 | 0 | 1 | 0 | 0 | 0 | 1.2 s |"
    assert render([{**result, "recovery_s": None}]).endswith("| - |")


async def _echo_server() -> tuple[asyncio.Server, int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


async def _roundtrip(port: int, payload: bytes = b"ping") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.read(1024), 2)
    finally:
        writer.close()


async def test_proxy_forwards_refuses_hangs_and_answers_503() -> None:
    server, upstream = await _echo_server()
    async with server, FaultProxy(upstream) as proxy:
        assert await _roundtrip(proxy.port) == b"ping"
        await proxy.set_mode("down")
        with pytest.raises(ConnectionRefusedError):
            await _roundtrip(proxy.port)
        await proxy.set_mode("hang")
        with pytest.raises(TimeoutError):
            await _roundtrip(proxy.port)
        await proxy.set_mode("http503")
        answer = await _roundtrip(proxy.port, b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")
        assert answer.startswith(b"HTTP/1.1 503 ")
        await proxy.set_mode("up")
        assert await _roundtrip(proxy.port) == b"ping"
        assert proxy.counters["answered_503"] == 1


async def test_switching_modes_cuts_open_connections() -> None:
    server, upstream = await _echo_server()
    async with server, FaultProxy(upstream) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"a")
        assert await asyncio.wait_for(reader.read(10), 2) == b"a"
        await proxy.set_mode("down")
        assert await asyncio.wait_for(reader.read(10), 2) == b""  # cut, not left hanging
        writer.close()
