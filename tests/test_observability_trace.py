"""W3C traceparent helpers: round trips, rejection of invalid values, one message = one trace."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from cloud.core.replies import failed
from ebrain.mqtt import MqttNotConnectedError
from ebrain.observability import trace
from edge.forward import StoreAndForward
from edge.spool import Spool
from gateway.core import downlink_message, uplink_record
from schemas import MAX_MESSAGE_BYTES, Envelope, Escalation, InferenceRequest, InferenceResult, encode, make, new_id
from schemas.ids import new_trace_id
from schemas.topics import kafka_uplink

hex_ = st.text(alphabet="0123456789abcdef", min_size=1, max_size=1)


@given(st.text(alphabet="0123456789abcdef", min_size=32, max_size=32),
       st.text(alphabet="0123456789abcdef", min_size=16, max_size=16), st.booleans())
def test_round_trip(trace_id: str, span_id: str, sampled: bool) -> None:
    ctx = trace.SpanContext(trace_id, span_id, sampled)
    parsed = trace.parse(ctx.header())
    if set(trace_id) == {"0"} or set(span_id) == {"0"}:
        assert parsed is None  # all-zero ids are invalid by the spec
    else:
        assert parsed == ctx
        assert trace.parse(ctx.header().encode()) == ctx


@given(st.text(max_size=80))
def test_garbage_never_parses_to_something_invalid(value: str) -> None:
    parsed = trace.parse(value)
    if parsed is not None:
        assert len(parsed.trace_id) == 32
        assert len(parsed.span_id) == 16


def test_next_hop_keeps_the_trace_and_makes_a_new_span() -> None:
    trace_id = new_trace_id()
    first = trace.start(trace_id)
    forwarded = trace.parse(trace.next_hop(trace_id, first.header()))
    assert forwarded is not None
    assert forwarded.trace_id == trace_id
    assert forwarded.span_id != first.span_id
    # Missing, malformed or foreign headers: a fresh span of the envelope's trace.
    for incoming in (None, b"junk", trace.start(new_trace_id()).header(), "01-" + first.header()[3:]):
        hop = trace.parse(trace.next_hop(trace_id, incoming))
        assert hop is not None
        assert hop.trace_id == trace_id


def test_gateway_headers_parse_with_these_helpers() -> None:
    from gateway.core import traceparent  # noqa: PLC0415 - the gateway's own writer

    trace_id = new_trace_id()
    parsed = trace.parse(traceparent(trace_id))
    assert parsed is not None
    assert parsed.trace_id == trace_id
    assert parsed.sampled


# --- every hop's writer: a child of what it received, of the envelope's trace --------------------------------

def _escalation(trace_id: str | None = None) -> Envelope[Escalation]:
    request = InferenceRequest(request_id=f"r-{new_id()[:8]}", prompt="plan my week", max_tokens=8)
    return make(Escalation(request=request, reason="tag:complex"), tenant="t1", device="d1", trace_id=trace_id)


def test_gateway_uplink_header_is_a_child_of_the_device_property() -> None:
    envelope = _escalation()
    # An unsampled parent: only a child keeps its flag (a fresh span would be sampled), so this proves derivation.
    device = trace.SpanContext(envelope.trace_id, trace.new_span_id(), sampled=False)
    record = uplink_record(envelope, traceparent_in=device.header())
    out = trace.parse(dict(record.headers)["traceparent"])
    assert out is not None
    assert (out.trace_id, out.sampled) == (envelope.trace_id, False)
    assert out.span_id != device.span_id
    # A device property of another trace never wins: a fresh (sampled) span of the envelope's trace.
    foreign = uplink_record(envelope, traceparent_in=trace.start(new_trace_id()).header())
    fresh = trace.parse(dict(foreign.headers)["traceparent"])
    assert fresh is not None
    assert (fresh.trace_id, fresh.sampled) == (envelope.trace_id, True)


def test_gateway_downlink_property_is_a_child_of_the_kafka_header() -> None:
    reply = make(InferenceResult(request_id="r1", route="cloud", text="ok", model_id="m", model_version="1",
                                 latency_ms=1.0), tenant="t1", device="d1", trace_id=new_trace_id())
    worker = trace.SpanContext(reply.trace_id, trace.new_span_id(), sampled=False)
    out = downlink_message("ebrain.down.result", encode(reply), max_bytes=MAX_MESSAGE_BYTES,
                           traceparent_in=worker.header().encode())
    sent = trace.parse(trace.from_properties(out.user_properties))
    assert sent is not None
    assert (sent.trace_id, sent.sampled) == (reply.trace_id, False)
    assert sent.span_id != worker.span_id
    assert out.traceparent_in == worker.header()
    assert trace.log_fields(out.traceparent or "", out.traceparent_in) == {
        "trace_id": reply.trace_id, "span_id": sent.span_id, "parent_span_id": worker.span_id}


class _Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Envelope[Any], dict[str, str]]] = []

    async def send(self, topic: str, envelope: Envelope[Any], *, headers: dict[str, str] | None = None) -> None:
        self.sent.append((topic, envelope, dict(headers or {})))


class _Busy:
    """Defers the first delivery; the retry gets its final (failed) answer."""

    async def respond(self, envelope: Envelope[Any], *, attempt: int = 0) -> Envelope[InferenceResult]:
        return failed(envelope, "busy", model_id="m", model_version="1", latency_ms=1.0,
                      status="deferred" if attempt == 0 else "failed", scores={"retry_after_ms": 1.0})


async def test_cloud_worker_records_carry_a_child_of_the_incoming_header() -> None:
    from cloud.core import RecentIds  # noqa: PLC0415
    from cloud.worker import ATTEMPT, NOT_BEFORE, RESULT_TOPIC, RETRY_TOPIC, UplinkHandler  # noqa: PLC0415

    envelope = _escalation()
    gateway = trace.start(envelope.trace_id)
    sink = _Sink()
    handler = UplinkHandler(_Busy(), sink, RecentIds(10))
    await handler.handle(encode(envelope), topic=kafka_uplink("escalation"), kind="escalation",
                         headers={"traceparent": gateway.header()})
    [(retry_topic, _, retry_headers), (result_topic, deferred, deferred_headers)] = sink.sent
    assert (retry_topic, result_topic) == (RETRY_TOPIC, RESULT_TOPIC)
    worker = trace.parse(retry_headers["traceparent"])
    assert worker is not None
    assert worker.trace_id == envelope.trace_id == deferred.trace_id
    assert worker.span_id != gateway.span_id
    assert deferred_headers["traceparent"] == retry_headers["traceparent"]  # one span sent both
    # The retry pass: its records are children of the retry record's header.
    await handler.handle(encode(envelope), topic=RETRY_TOPIC, kind=None,
                         headers={**retry_headers, ATTEMPT: "1", NOT_BEFORE: "0"})
    (topic, answer, answer_headers) = sink.sent[-1]
    assert (topic, answer.data.status) == (RESULT_TOPIC, "failed")
    retried = trace.parse(answer_headers["traceparent"])
    assert retried is not None
    assert retried.trace_id == envelope.trace_id
    assert retried.span_id not in {worker.span_id, gateway.span_id}


class _Link:
    connected = True

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[tuple[str, str], ...]]] = []
        self.fail = False

    async def wait_connected(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        return None

    async def publish(self, topic: str, payload: bytes, qos: int = 1, *,
                      user_properties: Sequence[tuple[str, str]] = ()) -> None:
        if self.fail:
            self.fail = False
            raise MqttNotConnectedError("link down")
        self.sent.append((payload, tuple(user_properties)))


async def test_edge_publishes_carry_the_first_span_direct_and_from_the_spool(tmp_path: Path) -> None:
    link = _Link()
    first, second = _escalation(), _escalation()
    async with StoreAndForward(link, Spool(tmp_path / "spool.db")) as forward:
        await forward.send(first)  # direct
        link.fail = True
        await forward.send(second)  # the publish fails: spooled, then drained
        assert await forward.flush(5)
    assert forward.counters["direct"] == 1
    assert forward.counters["drained"] == 1
    for (payload, props), envelope in zip(link.sent, (first, second), strict=True):
        assert payload == encode(envelope)
        ctx = trace.parse(trace.from_properties(props))
        assert ctx is not None
        assert ctx.trace_id == envelope.trace_id


def test_trace_id_in_finds_the_envelope_not_a_lookalike_in_the_payload() -> None:
    decoy = new_trace_id()
    request = InferenceRequest(request_id="r1", prompt=f'"trace_id":"{decoy}"', max_tokens=8)
    envelope = make(request, tenant="t1", device="d1")
    assert trace.trace_id_in(encode(envelope)) == envelope.trace_id
    assert trace.trace_id_in(b"{}") is None
