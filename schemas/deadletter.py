"""Build the dead letter for refused bytes: the raw message, the reason, and where it came from."""

from __future__ import annotations

import base64

from schemas.envelope import Envelope, make
from schemas.errors import InvalidMessage
from schemas.ids import valid_name
from schemas.payloads import DeadLetter

UNKNOWN = "unknown"
# Base64 grows bytes by 4/3: 128 KiB of raw input keeps the dead letter itself under the codec's 256 KiB cap,
# so an oversize message can always be dead-lettered (its full size is kept in `raw_size`).
MAX_RAW_KEPT = 128 * 1024


def dead_letter(
    raw: bytes,
    error: InvalidMessage,
    *,
    source_topic: str,
    component: str,
    tenant: str | None = None,
    device: str | None = None,
) -> Envelope[DeadLetter]:
    """Wrap `raw` (its first 128 KiB; the size is kept) with the reason; tenant/device default to 'unknown'."""
    detail = error.detail[:2000]
    if len(raw) > MAX_RAW_KEPT:
        detail += f" [raw {len(raw)} bytes, first {MAX_RAW_KEPT} kept]"
    payload = DeadLetter(
        reason=error.reason.value,
        detail=detail,
        source_topic=source_topic[:512],
        raw_b64=base64.b64encode(raw[:MAX_RAW_KEPT]).decode(),
        raw_size=len(raw),
        component=component,
    )
    tenant = tenant if tenant and valid_name(tenant) else UNKNOWN
    device = device if device and valid_name(device) else UNKNOWN
    return make(payload, tenant=tenant, device=device, source=f"ebrain://{component}")
