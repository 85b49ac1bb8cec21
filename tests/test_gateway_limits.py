"""Unit tests of the gateway core's limits and security: token buckets, reject replies, tenants, provisioning."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core import validate_uplink
from gateway.core.provision import (
    DeviceId,
    InventoryError,
    acl_file,
    parse_inventory,
    password_hash,
    tenants,
    verify_password,
)
from gateway.core.ratelimit import Limit, RateLimiter, Scope, TokenBucket
from gateway.core.reject import reject_reply
from gateway.provision import credentials_for, provision
from schemas import (
    Escalation,
    Feedback,
    InferenceRequest,
    InferenceResult,
    InvalidMessage,
    Reason,
    Telemetry,
    decode,
    encode,
    make,
)
from schemas.topics import mqtt_uplink

T, D = "acme", "dev-1"


def test_bucket_allows_burst_then_refills_at_rate() -> None:
    bucket = TokenBucket(Limit(rate_per_s=2.0, burst=3.0), tokens=3.0, updated=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(0.4)  # 0.8 tokens
    assert bucket.take(0.5)  # 1.0 token
    assert not bucket.take(0.5)
    assert bucket.take(100.0)
    assert bucket.tokens == pytest.approx(2.0)


@given(st.lists(st.floats(0, 0.5), min_size=1, max_size=200), st.floats(0.5, 50), st.floats(1, 20))
def test_a_device_never_passes_more_than_burst_plus_rate_times_elapsed(
    gaps: list[float], rate: float, burst: float
) -> None:
    limiter = RateLimiter(Limit(rate, burst), Limit())
    now, passed = 0.0, 0
    for gap in gaps:
        now += gap
        passed += limiter.check(T, D, now) is None
    assert passed <= burst + rate * now + 1e-6


def test_tenant_limit_spans_devices_and_does_not_charge_the_refused_device() -> None:
    limiter = RateLimiter(Limit(1.0, 2.0), Limit(1.0, 3.0))
    verdicts = [limiter.check(T, dev, 0.0) for dev in ("a", "a", "b", "b")]
    assert verdicts == [None, None, None, Scope.TENANT]
    assert limiter.check(T, "a", 0.0) is Scope.DEVICE
    assert limiter.check("other", "b", 0.0) is None  # another tenant has its own bucket
    assert limiter.check(T, "b", 1.0) is None  # b was refunded its token when the tenant refused it


def test_disabled_limits_pass_everything_and_keys_are_bounded() -> None:
    assert not RateLimiter(Limit(), Limit()).enabled
    limiter = RateLimiter(Limit(1.0, 1.0), Limit(), max_keys=2)
    for dev in ("a", "b", "c"):
        assert limiter.check(T, dev, 0.0) is None
    assert limiter.evicted == 1


def test_rejected_request_and_escalation_get_a_rejected_result_on_their_downlink() -> None:
    request = InferenceRequest(request_id="r7", prompt="hi")
    for envelope in (make(request, tenant=T, device=D),
                     make(Escalation(request=request, reason="x", draft="d"), tenant=T, device=D)):
        reply = reject_reply(envelope, Scope.DEVICE)
        assert reply is not None
        assert reply.topic == f"ebrain/{T}/{D}/down/result"
        result = decode(reply.payload)
        assert isinstance(result.data, InferenceResult)
        data = result.data
        assert (data.request_id, data.status, data.reason) == ("r7", "rejected", "rate_limited:device")
        assert result.trace_id == envelope.trace_id


def test_kinds_without_a_request_get_no_reply() -> None:
    telemetry = make(Telemetry(model_id="m", model_version="1", uptime_s=1.0), tenant=T, device=D)
    feedback = make(Feedback(request_id="r1", rating=1), tenant=T, device=D)
    assert reject_reply(telemetry, Scope.TENANT) is None
    assert reject_reply(feedback, Scope.TENANT) is None


def test_unknown_tenant_is_refused_only_when_a_registry_is_given() -> None:
    raw = encode(make(InferenceRequest(request_id="r1", prompt="hi"), tenant=T, device=D))
    topic = mqtt_uplink(T, D, "request")
    assert validate_uplink(topic, raw, max_bytes=4096).tenant == T
    assert validate_uplink(topic, raw, max_bytes=4096, tenants={T}).tenant == T
    with pytest.raises(InvalidMessage) as caught:
        validate_uplink(topic, raw, max_bytes=4096, tenants={"someone"})
    assert caught.value.reason is Reason.UNKNOWN_TENANT


def test_inventory_parsing() -> None:
    text = "tenant,device\n# fleet A\nacme, dev-1\nacme,dev-2  # spare\n\nacme,dev-1\nzeta,x\n"
    devices = parse_inventory(text)
    assert devices == [DeviceId("acme", "dev-1"), DeviceId("acme", "dev-2"), DeviceId("zeta", "x")]
    assert tenants(devices) == {"acme", "zeta"}
    for bad in ("acme\n", "acme,dev,1\n", "Acme,dev\n", "acme,dev/1\n", "acme,#\n"):
        with pytest.raises(InventoryError, match="line 1"):
            parse_inventory(bad)


def test_password_hash_is_mosquittos_pbkdf2_sha512_format() -> None:
    # A line written by `mosquitto_passwd -b` 2.0.11 for password "secret".
    stored = (
        "$7$101$UKiH0kKGEng4OZj0$"
        "JC+x0VBXc4VYWZpUrxKNvdnIUV3cjn4emPjnAYuIiKRy+PM6Y1ZKSRjFxaHxwLYZquwV5CJi2boDyqyhRduX6Q=="
    )
    assert verify_password("secret", stored)
    assert not verify_password("Secret", stored)
    mine = password_hash("pw", os.urandom(12))
    assert mine.startswith("$7$101$")
    assert verify_password("pw", mine)


def test_acl_confines_each_device_to_its_prefix() -> None:
    acl = acl_file([DeviceId("acme", "dev-1")], gateway_user="gw").splitlines()
    block = acl[acl.index("user acme.dev-1"):]
    assert block[1:3] == ["topic write ebrain/acme/dev-1/+", "topic read ebrain/acme/dev-1/down/+"]
    gateway = acl[acl.index("user gw"):acl.index("user gw") + 3]
    assert gateway[1:] == ["topic read ebrain/+/+/+", "topic write ebrain/+/+/down/+"]
    assert not [line for line in acl if line.startswith("pattern")]


def test_provision_writes_secrets_once_with_0600(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inventory = tmp_path / "devices.csv"
    inventory.write_text("acme,dev-1\nacme,dev-2\n")
    out = tmp_path / "auth"
    first = provision(inventory, out)
    assert (first.devices, first.new_users) == (2, 3)
    for path in (first.credentials, first.password_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    user, password = credentials_for(out, DeviceId("acme", "dev-1"))
    hashes = dict(line.split(":", 1) for line in first.password_file.read_text().splitlines())
    assert verify_password(password, hashes[user])

    inventory.write_text("acme,dev-1\nacme,dev-2\nbeta,dev-9\n")
    second = provision(inventory, out)
    assert (second.devices, second.new_users) == (3, 1)
    assert credentials_for(out, DeviceId("acme", "dev-1")) == (user, password)  # kept, not regenerated
    assert "user beta.dev-9" in second.acl_file.read_text()
    assert password not in capsys.readouterr().out
