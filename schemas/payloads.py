"""Payload models: what travels inside an envelope's `data`. Each class names its type, topic kind and version.

Bump `VERSION` when a payload changes shape, and add an upcaster in `schemas.upcast` for the old one.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

Text = Annotated[str, Field(max_length=32_768)]
ShortText = Annotated[str, Field(max_length=512)]
Ident = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
Route = Literal["local", "cloud", "cache"]
Status = Literal["ok", "deferred", "failed", "rejected"]


class Payload(BaseModel):
    """Base for every payload: frozen, and unknown fields are an error rather than silently dropped."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    TYPE: ClassVar[str]
    KIND: ClassVar[str]
    VERSION: ClassVar[int]


class InferenceRequest(Payload):
    """A prompt to answer. v2 renamed v1's `max_new_tokens` to `max_tokens` and added `tags`."""

    TYPE: ClassVar[str] = "ebrain.inference.request"
    KIND: ClassVar[str] = "request"
    VERSION: ClassVar[int] = 2

    request_id: Ident
    prompt: Text = Field(min_length=1)
    system: Text | None = None
    max_tokens: int = Field(default=128, ge=1, le=4096)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    tags: tuple[ShortText, ...] = Field(default=(), max_length=16)
    deadline_ms: int | None = Field(default=None, ge=1, description="Give up this many ms after `time`.")


class InferenceResult(Payload):
    """The outcome of one request: who answered (route), with what model, how fast and how sure."""

    TYPE: ClassVar[str] = "ebrain.inference.result"
    KIND: ClassVar[str] = "result"
    VERSION: ClassVar[int] = 1

    request_id: Ident
    route: Route
    status: Status = "ok"
    text: Text = ""
    model_id: ShortText
    model_version: ShortText
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    latency_ms: float = Field(ge=0.0)
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    reason: ShortText = Field(default="", description="Why this route served it, or why it failed.")
    scores: dict[ShortText, float] = Field(default_factory=dict, max_length=32)
    # Optional, added without a version bump (older senders omit it): the prompt answered, so a local
    # result can become a training record (cloud.ingest); the edge sets it, replies to the edge need not.
    prompt: Text | None = Field(default=None, description="The prompt this result answers, when shared.")


class Escalation(Payload):
    """A request the edge hands to the cloud, with its local draft so the cloud can use or grade it."""

    TYPE: ClassVar[str] = "ebrain.escalation"
    KIND: ClassVar[str] = "escalation"
    VERSION: ClassVar[int] = 1

    request: InferenceRequest
    reason: ShortText
    scores: dict[ShortText, float] = Field(default_factory=dict, max_length=32)
    draft: Text | None = None
    draft_model_id: ShortText | None = None
    draft_model_version: ShortText | None = None


class Telemetry(Payload):
    """Periodic device health: which model runs, and counters the fleet dashboards and rollouts read."""

    TYPE: ClassVar[str] = "ebrain.telemetry"
    KIND: ClassVar[str] = "telemetry"
    VERSION: ClassVar[int] = 1

    model_id: ShortText
    model_version: ShortText
    uptime_s: float = Field(ge=0.0)
    queue_depth: int = Field(default=0, ge=0)
    spool_depth: int = Field(default=0, ge=0)
    counters: dict[ShortText, float] = Field(default_factory=dict, max_length=64)
    # Optional, added without a version bump (older senders simply omit them):
    canary: bool = Field(default=False, description="The running model came from a canary rollout.")
    model_update: ShortText | None = Field(
        default=None, description="Outcome of the last OTA order: 'ok:<version>' or 'failed:<version>:<why>'."
    )


class ModelUpdate(Payload):
    """An over-the-air model rollout order for one device (downlink)."""

    TYPE: ClassVar[str] = "ebrain.model.update"
    KIND: ClassVar[str] = "model_update"
    VERSION: ClassVar[int] = 1

    model_id: ShortText
    version: ShortText
    url: ShortText | None = None
    path: ShortText | None = None
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    size_bytes: int = Field(ge=1)
    canary: bool = False


class Feedback(Payload):
    """A user's judgement of an answer: a rating and optionally the answer they preferred."""

    TYPE: ClassVar[str] = "ebrain.feedback"
    KIND: ClassVar[str] = "feedback"
    VERSION: ClassVar[int] = 1

    request_id: Ident
    rating: int = Field(ge=-1, le=1)
    comment: Text | None = None
    preferred: Text | None = None


class DeadLetter(Payload):
    """A message that was refused: the raw bytes (base64), why, and where it came from."""

    TYPE: ClassVar[str] = "ebrain.deadletter"
    KIND: ClassVar[str] = "deadletter"
    VERSION: ClassVar[int] = 1

    reason: ShortText
    detail: Annotated[str, Field(max_length=2_100)]
    source_topic: ShortText
    raw_b64: Annotated[str, Field(max_length=200_000)]
    raw_size: int = Field(ge=0)
    component: ShortText


PAYLOAD_TYPES: tuple[type[Payload], ...] = (
    InferenceRequest,
    InferenceResult,
    Escalation,
    Telemetry,
    ModelUpdate,
    Feedback,
    DeadLetter,
)
BY_TYPE: dict[str, type[Payload]] = {p.TYPE: p for p in PAYLOAD_TYPES}
BY_KIND: dict[str, type[Payload]] = {p.KIND: p for p in PAYLOAD_TYPES}
