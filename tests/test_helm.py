"""The Helm chart (deploy/helm/ebrain): linted and rendered with Helm's own Go SDK (the helm-python-sdk wheel, no
helm binary) when installed; the rendered objects are checked for the settings they pass and the KEDA scalers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from cloud.ingest.settings import IngestSettings
from cloud.settings import CloudSettings
from edge.settings import EdgeSettings
from gateway.settings import GatewaySettings
from tests.test_compose import _field_exists

CHART = Path(__file__).resolve().parents[1] / "deploy" / "helm" / "ebrain"
helm = pytest.importorskip("helm_python", reason="helm-python-sdk not installed (pip install helm-python-sdk)")


def render(values: dict[str, Any] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, name) -> object, as `helm template ebrain deploy/helm/ebrain -n prod` renders them."""
    manifests = helm.Chart.load(CHART).render(values, name="ebrain", namespace="prod", is_install=True)
    objects = [d for text in manifests.values() for d in yaml.safe_load_all(text) if d]
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def _container(obj: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = obj["spec"]["template"]["spec"]["containers"][0]
    return container


def _env(obj: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "<from secret or field>") for e in _container(obj)["env"]}


@pytest.mark.parametrize("values", [None, {"edge": {"enabled": True, "credentialsSecret": "sim-mqtt"},
                                     "ingest": {"persistence": {"existingClaim": "shared-dataset"}}}],
                         ids=["defaults", "edge-and-own-claim"])
def test_chart_lints_clean(values: dict[str, Any] | None) -> None:
    report = helm.lint(CHART, values, strict=True, kube_version="v1.30.0")
    assert report["errors"] == []
    assert not [m for m in report["messages"] if m["severity"] >= 2], report["messages"]


def test_default_render_has_gateway_workers_vllm_and_scalers() -> None:
    objects = render()
    assert set(objects) == {
        ("StatefulSet", "ebrain-gateway"), ("Service", "ebrain-gateway"), ("Deployment", "ebrain-worker"),
        ("Service", "ebrain-worker"), ("Deployment", "ebrain-vllm"), ("Service", "ebrain-vllm"),
        ("Deployment", "ebrain-llama-server"), ("Service", "ebrain-llama-server"),
        ("ScaledObject", "ebrain-worker"), ("ScaledObject", "ebrain-vllm"),
        ("Deployment", "ebrain-ingest"), ("Service", "ebrain-ingest"), ("PersistentVolumeClaim", "ebrain-dataset"),
    }
    for (kind, name), obj in objects.items():
        assert obj["apiVersion"], name
        assert len(name) <= 63
        if kind in {"Deployment", "StatefulSet"}:
            selector = obj["spec"]["selector"]["matchLabels"]
            assert selector.items() <= obj["spec"]["template"]["metadata"]["labels"].items(), name
            assert _container(obj)["image"], name
            assert _container(obj).get("readinessProbe") or _container(obj).get("startupProbe"), name


def test_keda_scales_workers_on_lag_and_vllm_on_its_queue() -> None:
    objects = render()
    worker = objects[("ScaledObject", "ebrain-worker")]
    assert worker["apiVersion"] == "keda.sh/v1alpha1"
    assert worker["spec"]["scaleTargetRef"]["name"] == "ebrain-worker"
    (trigger,) = worker["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == _env(objects[("Deployment", "ebrain-worker")])["EBRAIN_GROUP_ID"]
    assert int(trigger["metadata"]["lagThreshold"]) > 0
    assert "replicas" not in objects[("Deployment", "ebrain-worker")]["spec"]  # KEDA owns the replica count
    vllm = objects[("ScaledObject", "ebrain-vllm")]
    (trigger,) = vllm["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["query"].startswith("sum(vllm:num_requests_waiting")
    assert float(trigger["metadata"]["threshold"]) > 0
    args = _container(objects[("Deployment", "ebrain-vllm")])["args"]
    spec = next(a for a in args if a.startswith("--speculative-config="))
    assert json.loads(spec.split("=", 1)[1])["num_speculative_tokens"] == 5
    assert _container(objects[("Deployment", "ebrain-vllm")])["resources"]["limits"]["nvidia.com/gpu"] == 1


EDGE_ON = {"edge": {"enabled": True, "credentialsSecret": "sim-mqtt"}}


@pytest.mark.parametrize(("kind", "name", "cls"), [
    ("StatefulSet", "ebrain-gateway", GatewaySettings), ("Deployment", "ebrain-worker", CloudSettings),
    ("Deployment", "ebrain-ingest", IngestSettings), ("Deployment", "ebrain-edge", EdgeSettings)])
def test_every_variable_is_a_setting_that_validates(
    kind: str, name: str, cls: type[BaseSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _env(render(EDGE_ON)[(kind, name)])
    for key in env:
        assert _field_exists(cls, key.removeprefix("EBRAIN_").lower().split("__")), key
    for key in [k for k in os.environ if k.startswith("EBRAIN_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, "x" if value.startswith("<") else value)
    settings = cls()
    if isinstance(settings, CloudSettings):
        assert [b.name for b in settings.backends] == ["vllm", "llama-cpu"]


def test_gateway_replicas_have_distinct_stable_client_ids() -> None:
    gateway = render()[("StatefulSet", "ebrain-gateway")]
    client_id = next(e for e in _container(gateway)["env"] if e["name"] == "EBRAIN_CLIENT_ID")
    assert client_id["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"  # ebrain-gateway-0, -1, ...
    assert gateway["spec"]["replicas"] == 2


def test_without_vllm_the_workers_use_the_cpu_replica_only() -> None:
    objects = render({"vllm": {"enabled": False}})
    assert ("Deployment", "ebrain-vllm") not in objects
    assert ("ScaledObject", "ebrain-vllm") not in objects
    backends = json.loads(_env(objects[("Deployment", "ebrain-worker")])["EBRAIN_BACKENDS"])
    assert [b["name"] for b in backends] == ["llama-cpu"]


def test_schema_rejects_bad_values() -> None:
    chart = helm.Chart.load(CHART)
    with pytest.raises(helm.HelmValuesError, match="replicas"):
        chart.validate_schema({"gateway": {"replicas": 0, "shareGroup": "g"}})
    with pytest.raises(helm.HelmValuesError, match="shareGroup"):
        chart.validate_schema({"gateway": {"replicas": 1, "shareGroup": "no/slash"}})


def test_every_ebrain_service_serves_metrics_where_the_probes_and_prometheus_look() -> None:
    """EBRAIN_METRICS_ADDR=0.0.0.0 (the settings' 127.0.0.1 is unreachable from the kubelet and Prometheus)."""
    objects = render(EDGE_ON)
    services = [o for (kind, name), o in objects.items() if kind in {"Deployment", "StatefulSet"}
                and name not in {"ebrain-vllm", "ebrain-llama-server"}]
    assert {o["metadata"]["name"] for o in services} == {"ebrain-gateway", "ebrain-worker", "ebrain-ingest",
                                                        "ebrain-edge"}
    for obj in services:
        env, container = _env(obj), _container(obj)
        assert env["EBRAIN_METRICS_ADDR"] == "0.0.0.0", obj["metadata"]["name"]
        port = int(env["EBRAIN_METRICS_PORT"])
        assert {"name": "metrics", "containerPort": port} in container["ports"]
        assert obj["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(port)
        assert container["args"][0] == "--"  # the entrypoint only runs the command (and applies credentials)


def test_ingest_keeps_its_dataset_on_a_volume_and_edge_simulators_are_off_by_default() -> None:
    objects = render()
    assert not [name for kind, name in objects if name == "ebrain-edge"]
    ingest = objects[("Deployment", "ebrain-ingest")]
    assert ingest["spec"]["replicas"] == 1
    assert ingest["spec"]["strategy"]["type"] == "Recreate"
    assert _env(ingest)["EBRAIN_DATA_DIR"] == "/data"
    claim = ingest["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert claim == "ebrain-dataset"
    own = render({"ingest": {"persistence": {"existingClaim": "shared-dataset"}}})
    assert ("PersistentVolumeClaim", "ebrain-dataset") not in own
    volume = own[("Deployment", "ebrain-ingest")]["spec"]["template"]["spec"]["volumes"][0]
    assert volume["persistentVolumeClaim"]["claimName"] == "shared-dataset"
    assert ("Deployment", "ebrain-ingest") not in render({"ingest": {"enabled": False}})


def test_edge_simulators_are_one_device_per_pod_within_the_edge_budget() -> None:
    edge = render({"edge": {"enabled": True, "replicas": 3}})[("Deployment", "ebrain-edge")]
    assert edge["spec"]["replicas"] == 3
    container = _container(edge)
    device = next(e for e in container["env"] if e["name"] == "EBRAIN_DEVICE")
    assert device["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "2Gi"}
    assert container["args"][:3] == ["--", "edge", "run"]
    assert "EBRAIN_MQTT__USERNAME" not in _env(edge)  # no credentials secret given: anonymous
    chart = helm.Chart.load(CHART)
    with pytest.raises(helm.HelmValuesError, match="tenant"):
        chart.validate_schema({"edge": {"enabled": True, "tenant": "Not/A/Tenant"}})
