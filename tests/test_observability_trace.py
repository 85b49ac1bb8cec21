"""W3C traceparent helpers: round trips, rejection of invalid values, one message = one trace."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ebrain.observability import trace
from schemas.ids import new_trace_id

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
