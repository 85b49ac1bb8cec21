"""The loss ledger: every request a device sent, accounted for from what the stack shows afterwards. No I/O.

Keyed by request id (the device's own id for one request; it is inside every envelope that carries the
request: the local result, the escalation, the retry and the cloud's reply). Each sent id lands in exactly
one bucket, checked in this order:

- `answered`: the cloud published a final reply for it (status ok, failed or rejected) on ebrain.down.result;
- `deferred`: the cloud deferred it (a record on ebrain.retry, or a `deferred` reply) and has not answered yet;
- `in_kafka`: its uplink message (local result or escalation) is in Kafka, nothing more was owed or came yet;
- `dead_lettered`: a dead letter names it, with the reason;
- `refused`: the device refused it at once with a clear reason (e.g. its disk is full) and said so;
- `lost`: none of the above. At least once means `lost` must be 0.

`duplicates` counts records beyond the first with the same envelope id, on the uplink topics and among the
replies: at-least-once delivery allows them (consumers dedup by id), so they are counted, not failed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

FINAL_STATUSES = frozenset({"ok", "failed", "rejected"})
BUCKETS = ("answered", "deferred", "in_kafka", "dead_lettered", "refused", "lost")


@dataclass(frozen=True, slots=True)
class Uplink:
    """One uplink record read back from Kafka (ebrain.result, ebrain.escalation, ebrain.request)."""

    envelope_id: str
    request_id: str
    kind: str
    at_s: float = 0.0  # Kafka record timestamp, epoch seconds


@dataclass(frozen=True, slots=True)
class Reply:
    """One record on ebrain.down.result."""

    envelope_id: str
    request_id: str
    status: str
    at_s: float = 0.0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead letter; `request_id` when the raw bytes still name one."""

    reason: str
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """A device outcome that refused the request at once, with its reason."""

    request_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Observed:
    """Everything read back for one run (one tenant)."""

    uplinks: Sequence[Uplink] = ()
    replies: Sequence[Reply] = ()
    retried: frozenset[str] = frozenset()  # request ids with a record on ebrain.retry
    dead_letters: Sequence[DeadLetter] = ()
    refusals: Sequence[Refusal] = ()


@dataclass(frozen=True)
class Ledger:
    """The reconciliation: one bucket per sent id, plus duplicates and ids nobody sent."""

    sent: int
    buckets: dict[str, int]
    duplicates: int
    ever_deferred: int
    failed_replies: int
    unknown: int
    awaiting_reply: int = 0  # in_kafka escalations or requests: the cloud owes them an answer still
    lost_ids: tuple[str, ...] = ()
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return self.buckets["lost"]

    def to_json(self) -> dict[str, object]:
        return {"sent": self.sent, "lost": self.lost, "duplicates": self.duplicates,
                "dead_lettered": self.buckets["dead_lettered"], **{b: self.buckets[b] for b in BUCKETS[:3]},
                "refused": self.buckets["refused"], "ever_deferred": self.ever_deferred,
                "failed_replies": self.failed_replies, "unknown": self.unknown,
                "awaiting_reply": self.awaiting_reply,
                "lost_ids": list(self.lost_ids[:10]), "reasons": self.reasons}


def extra_copies(ids: Iterable[str]) -> int:
    """How many items repeat an id seen before."""
    return sum(n - 1 for n in Counter(ids).values())


def bucket_of(request_id: str, obs: _Index) -> str:
    """The one bucket `request_id` belongs to (see the module docstring for the order)."""
    if request_id in obs.final:
        return "answered"
    if request_id in obs.deferred:
        return "deferred"
    if request_id in obs.uplinked:
        return "in_kafka"
    if request_id in obs.dead:
        return "dead_lettered"
    if request_id in obs.refused:
        return "refused"
    return "lost"


@dataclass(frozen=True)
class _Index:
    final: frozenset[str]
    deferred: frozenset[str]
    uplinked: frozenset[str]
    dead: frozenset[str]
    refused: frozenset[str]

    @classmethod
    def of(cls, obs: Observed) -> _Index:
        return cls(
            final=frozenset(r.request_id for r in obs.replies if r.status in FINAL_STATUSES),
            deferred=obs.retried | {r.request_id for r in obs.replies if r.status == "deferred"},
            uplinked=frozenset(u.request_id for u in obs.uplinks),
            dead=frozenset(d.request_id for d in obs.dead_letters if d.request_id),
            refused=frozenset(r.request_id for r in obs.refusals),
        )


def reconcile(sent: Iterable[str], obs: Observed) -> Ledger:
    """Account for every id in `sent` (repeats in `sent` count once) against what was observed."""
    ids = list(dict.fromkeys(sent))
    index = _Index.of(obs)
    buckets = dict.fromkeys(BUCKETS, 0)
    lost: list[str] = []
    asked = {u.request_id for u in obs.uplinks if u.kind in {"escalation", "request"}}
    awaiting = 0
    for request_id in ids:
        bucket = bucket_of(request_id, index)
        buckets[bucket] += 1
        if bucket == "lost":
            lost.append(request_id)
        awaiting += bucket == "in_kafka" and request_id in asked
    known = set(ids)
    seen = index.uplinked | index.final | index.deferred | index.dead | index.refused
    reasons = Counter(f"dead_letter:{d.reason}" for d in obs.dead_letters)
    reasons.update(f"refused:{r.reason}" for r in obs.refusals if r.request_id in known)
    return Ledger(
        sent=len(ids),
        buckets=buckets,
        duplicates=extra_copies(u.envelope_id for u in obs.uplinks) + extra_copies(r.envelope_id for r in obs.replies),
        ever_deferred=len(index.deferred & known),
        failed_replies=len({r.request_id for r in obs.replies if r.status in {"failed", "rejected"}} & known),
        unknown=len(seen - known),
        awaiting_reply=awaiting,
        lost_ids=tuple(lost),
        reasons=dict(reasons),
    )


def recovery_s(cleared_at_s: float, flow_at_s: Iterable[float]) -> float | None:
    """Seconds from the fault's clearing to the first flow event at or after it; None if nothing flowed."""
    after = [t for t in flow_at_s if t >= cleared_at_s]
    return round(min(after) - cleared_at_s, 2) if after else None
