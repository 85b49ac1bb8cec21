"""OTA model updates with real llama.cpp (tiny models): bad orders refused while the old model keeps serving,
a good one swapped in without cutting requests in flight, and the whole path over the real Mosquitto downlink."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ebrain.config import MqttSettings
from ebrain.inference import Engine
from ebrain.inference.llama import LlamaCppEngine
from ebrain.models.tiny import write_tiny_llama
from ebrain.mqtt import MqttClient
from edge.engines import SwappableEngine
from edge.ota import ModelManager, startup_models
from edge.settings import EdgeSettings
from schemas import InferenceRequest, ModelUpdate, Telemetry, decode, encode, make
from schemas.topics import mqtt_downlink, mqtt_uplink
from tests.test_models import FakeHub, hub

__all__ = ["hub"]  # the Range-capable HTTP server fixture, reused


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("ota-models")
    return write_tiny_llama(base / "v1.gguf", seed=1), write_tiny_llama(base / "v2.gguf", seed=2)


async def _load(path: Path, model_id: str, version: str) -> Engine:
    return await LlamaCppEngine.load(path, model_id=model_id, model_version=version, n_threads=1, n_ctx=512)


def _order(path: Path, version: str = "2", **kw: object) -> ModelUpdate:
    data = path.read_bytes()
    fields: dict[str, object] = {"model_id": "tiny", "version": version, "path": str(path),
                                 "sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data), **kw}
    return ModelUpdate.model_validate(fields)


@pytest.fixture
async def manager(models: tuple[Path, Path], tmp_path: Path) -> AsyncIterator[tuple[ModelManager, SwappableEngine]]:
    engine = SwappableEngine(await _load(models[0], "tiny", "1"))
    reports: list[str] = []

    async def report(text: str) -> None:
        reports.append(text)

    yield ModelManager(engine, loader=_load, models_dir=tmp_path / "ota", report=report), engine
    await engine.aclose()


async def _serves(engine: SwappableEngine) -> str:
    out = await engine.complete(InferenceRequest(request_id="probe", prompt="hi", max_tokens=2))
    assert out.completion_tokens > 0
    return out.model_version


async def test_wrong_sha256_is_refused_and_the_old_model_keeps_serving(
    manager: tuple[ModelManager, SwappableEngine], models: tuple[Path, Path]
) -> None:
    ota, engine = manager
    report = await ota.apply(_order(models[1], sha256="0" * 64))
    assert report == "failed:2:verify_failed"
    assert await _serves(engine) == "1"
    assert ota.counters["ota_failed"] == 1
    assert not list((ota._dir).glob("*.gguf"))  # the unverified bytes were not kept


async def test_a_model_failing_the_smoke_test_is_refused(
    manager: tuple[ModelManager, SwappableEngine], models: tuple[Path, Path]
) -> None:
    ota, engine = manager
    ota._smoke_max_latency_ms = 0.0  # any generation is too slow: loads, generates, fails the bound
    assert (await ota.apply(_order(models[1]))).startswith("failed:2:smoke_too_slow")
    assert await _serves(engine) == "1"


async def test_a_file_that_does_not_load_is_refused(
    manager: tuple[ModelManager, SwappableEngine], tmp_path: Path
) -> None:
    ota, engine = manager
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\0" * 1000)  # right sha256 and size for these bytes, not a model
    assert await ota.apply(_order(junk)) == "failed:2:load_failed"
    assert await _serves(engine) == "1"


async def test_good_update_swaps_without_cutting_a_request_in_flight_and_is_remembered(
    manager: tuple[ModelManager, SwappableEngine], models: tuple[Path, Path]
) -> None:
    ota, engine = manager
    in_flight = asyncio.create_task(
        engine.complete(InferenceRequest(request_id="long", prompt="go", max_tokens=400)))
    await asyncio.sleep(0)  # let it start on the old engine
    assert await ota.apply(_order(models[1], canary=True)) == "ok:2"
    done = await in_flight
    assert done.model_version == "1"  # finished on the old engine
    assert done.completion_tokens == 400
    assert await _serves(engine) == "2"
    assert ota.canary
    recorded = startup_models(ota._dir)
    assert [m["version"] for m in recorded] == ["2", "1"]
    assert Path(recorded[1]["path"]) == models[0]  # the previous model stays on disk
    assert await ota.apply(_order(models[1])) == "ok:2"  # a redelivered order is a no-op


async def test_download_by_url_with_resume(
    manager: tuple[ModelManager, SwappableEngine], models: tuple[Path, Path], hub: tuple[FakeHub, str]
) -> None:
    ota, engine = manager
    state, url = hub
    state.data = models[1].read_bytes()
    state.etag = hashlib.sha256(state.data).hexdigest()
    state.fail_after = 100_000  # the first body breaks off; the retry resumes with a Range request
    order = _order(models[1]).model_copy(update={"path": None, "url": f"{url}/cdn/model.gguf"})
    assert await ota.apply(order) == "ok:2"
    assert state.ranges == [None, "bytes=100000-"]
    assert await _serves(engine) == "2"


@pytest.mark.integration
async def test_update_order_over_the_mqtt_downlink_is_applied_and_reported(
    mqtt_settings: MqttSettings, models: tuple[Path, Path], tmp_path: Path
) -> None:
    from edge.app import device_stack  # noqa: PLC0415

    uid = uuid.uuid4().hex[:8]
    tenant, device = "t-ota", f"o{uid}"
    settings = EdgeSettings(tenant=tenant, device=device, state_dir=tmp_path, n_threads=1, n_ctx=512,
                            mqtt=mqtt_settings.model_copy(update={"session_expiry_s": 0}), telemetry_interval_s=3600,
                            connect_grace_s=60)  # subscribed (SUBACK) before the orders go out, even on a busy CI
    engine = SwappableEngine(await _load(models[0], "tiny", "1"))
    async with MqttClient(mqtt_settings, client_id=f"ctl-{uid}", clean_start=True) as control:
        await control.subscribe(mqtt_uplink(tenant, device, "telemetry"))
        async with device_stack(settings, engine, device) as agent:
            bad = make(_order(models[1], version="3", sha256="1" * 64), tenant=tenant, device=device)
            good = make(_order(models[1], version="2", canary=True), tenant=tenant, device=device)
            for order in (bad, good):
                await control.publish(mqtt_downlink(tenant, device, "model_update"), encode(order))
            reports = []
            async with asyncio.timeout(90):
                async for message in control.messages():
                    telemetry = decode(message.payload).data
                    assert isinstance(telemetry, Telemetry)
                    reports.append((telemetry.model_update, telemetry.model_version, telemetry.canary))
                    if len(reports) == 2:
                        break
            assert agent.engine.model_version == "2"
    await engine.aclose()
    assert reports == [("failed:3:verify_failed", "1", False), ("ok:2", "2", True)]


async def test_startup_falls_back_to_the_previous_model_when_the_recorded_one_fails(
    models: tuple[Path, Path], tmp_path: Path
) -> None:
    import json  # noqa: PLC0415

    from edge.app import ota_dir, startup_engine  # noqa: PLC0415

    settings = EdgeSettings(state_dir=tmp_path, n_threads=1, n_ctx=512, model=str(models[1]), model_version="cfg")
    junk = tmp_path / "broken.gguf"
    junk.write_bytes(b"not a model")
    ota_dir(settings).mkdir(parents=True)
    (ota_dir(settings) / "current.json").write_text(json.dumps({
        "current": {"path": str(junk), "model_id": "tiny", "version": "9"},
        "previous": {"path": str(models[0]), "model_id": "tiny", "version": "1"},
    }))
    engine = await startup_engine(settings)
    try:
        assert engine.model_version == "1"
    finally:
        await engine.aclose()
    (ota_dir(settings) / "current.json").unlink()
    engine = await startup_engine(settings)  # nothing recorded: the configured model
    try:
        assert engine.model_version == "cfg"
    finally:
        await engine.aclose()
