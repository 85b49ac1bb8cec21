"""The envelope every message travels in: CloudEvents-style attributes kept apart from the payload (`data`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Generic, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.ids import NAME_PATTERN, new_id, new_trace_id
from schemas.payloads import Payload

P = TypeVar("P", bound=Payload)

Name = Annotated[str, Field(pattern=NAME_PATTERN)]
CONTENT_TYPE = "application/json"


class Envelope(BaseModel, Generic[P]):
    """One message. `id` is the idempotency key on every hop; `trace_id` is one trace end to end."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    specversion: Literal["1.0"] = "1.0"
    id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
    type: Annotated[str, Field(max_length=128)]
    source: Annotated[str, Field(min_length=1, max_length=256)]
    time: datetime
    schema_version: int = Field(ge=1)
    tenant: Name
    device: Name
    trace_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    datacontenttype: Literal["application/json"] = "application/json"
    data: P

    @model_validator(mode="after")
    def _type_matches_payload(self) -> Self:
        if self.type != self.data.TYPE:
            raise ValueError(f"type {self.type!r} does not match payload {self.data.TYPE!r}")
        if self.schema_version != self.data.VERSION:
            raise ValueError(f"schema_version {self.schema_version} != payload version {self.data.VERSION}")
        if self.time.tzinfo is None:
            raise ValueError("time must carry a timezone")
        return self

    @property
    def key(self) -> str:
        """The partition key: one device's messages stay in order in one partition."""
        return f"{self.tenant}/{self.device}"


def make(
    payload: P,
    *,
    tenant: str,
    device: str,
    source: str | None = None,
    trace_id: str | None = None,
    message_id: str | None = None,
) -> Envelope[P]:
    """Wrap `payload` in a fresh envelope; pass `trace_id` to continue an existing trace."""
    return Envelope[P](
        id=message_id or new_id(),
        type=payload.TYPE,
        source=source or f"ebrain://{tenant}/{device}",
        time=datetime.now(UTC),
        schema_version=payload.VERSION,
        tenant=tenant,
        device=device,
        trace_id=trace_id or new_trace_id(),
        data=payload,
    )
