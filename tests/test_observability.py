"""Dashboards, alert rules and the container entrypoint: every series they name is one the code exports (or a
known exporter's), the checked-in JSON is what the generator writes, and promtool accepts and unit-tests the rules.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from cloud.ingest.settings import IngestSettings
from cloud.settings import CloudSettings
from ebrain.config import MqttSettings
from ebrain.observability import dashboards, entry
from edge.settings import EdgeSettings
from gateway.settings import GatewaySettings
from trainers.settings import TrainerSettings

ROOT = Path(__file__).resolve().parents[1]
PROM = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
# Series from outside this code base: Prometheus itself, kafka-exporter, vLLM.
EXTERNAL = re.compile(r"^(up|kafka_consumergroup_lag|vllm:[a-z_]+)$")
_SUFFIX = re.compile(r"_(bucket|sum|count)$")
_FUNCS = {"sum", "rate", "increase", "count", "max", "min", "avg", "by", "histogram_quantile", "or", "vector",
          "on", "and", "humanize", "humanizePercentage", "without", "le"}


def code_metric_names() -> set[str]:
    """Every `ebrain_*` series name a component registers (grepped from the sources, tests excluded)."""
    names: set[str] = set()
    for package in ("edge", "gateway", "cloud", "ebrain", "trainers"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            names |= set(re.findall(r'(?:Counter|Gauge|Histogram|Summary)\(\s*"(ebrain_[a-z0-9_]+)"', text))
    return names


def series_in(expr: str) -> set[str]:
    """Metric names in a PromQL expression (identifiers followed by `{`, `[` or standing alone as a selector)."""
    expr = re.sub(r'"[^"]*"', '""', expr)  # drop label values and strings
    expr = re.sub(r"\{[^}]*\}", "{}", expr)  # and matchers
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    labels = set(re.findall(r"by \(([^)]*)\)", expr))
    label_names = {n.strip() for group in labels for n in group.split(",")}
    return {n for n in names if n not in _FUNCS and n not in label_names and not n[0].isdigit()
            and not re.fullmatch(r"\d+[smhd]", n) and n not in {"m", "h", "d", "s"}}


def _check_known(names: set[str], where: str) -> None:
    exported = code_metric_names()
    for name in names:
        base = _SUFFIX.sub("", name)
        assert base in exported or EXTERNAL.match(name), f"{where}: {name} is exported by no component"


def test_code_exports_the_metrics_the_docs_list() -> None:
    names = code_metric_names()
    assert len(names) > 40
    bad = [n for n in names
           if not re.fullmatch(r"ebrain_(edge|gateway|cloud|ingest|mqtt|llama|trainer)_[a-z0-9_]+", n)]
    assert not bad, bad


def test_checked_in_dashboards_are_generated_from_the_module() -> None:
    for uid in dashboards.DASHBOARDS:
        path = GRAFANA / "dashboards" / f"{uid}.json"
        assert path.read_text() == dashboards.render(uid), (
            f"{path} is stale: python -m ebrain.observability.dashboards deploy/grafana/dashboards")
    assert {p.stem for p in (GRAFANA / "dashboards").glob("*.json")} == set(dashboards.DASHBOARDS)
    assert {"fleet", "gateway", "cloud", "data", "training"} == set(dashboards.DASHBOARDS)


def test_every_dashboard_query_names_an_exported_series() -> None:
    seen: set[str] = set()
    for uid in dashboards.DASHBOARDS:
        for panel in dashboards.dashboard(uid)["panels"]:
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                names = series_in(target["expr"])
                assert names, target["expr"]
                _check_known(names, f"{uid}/{panel['title']}")
                seen |= names
    assert "vllm:num_requests_waiting" in seen
    assert "kafka_consumergroup_lag" in seen


def test_every_alert_names_an_exported_series() -> None:
    rules = yaml.safe_load((PROM / "alerts.yml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert {"KafkaConsumerLagHigh", "GatewayDeadLetters", "CloudDeadLetters", "CloudFallbackRateHigh", "EdgeOffline",
            "ModelRolloutRolledBack", "ModelUpdateFailed"} <= set(alerts)
    assert "ebrain_trainer_rollouts_total" in series_in(alerts["ModelRolloutRolledBack"]["expr"])
    for name, rule in alerts.items():
        _check_known(series_in(rule["expr"]), name)
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


def test_grafana_provisioning_points_at_the_dashboards() -> None:
    source = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert source["datasources"][0]["uid"] == dashboards.DATASOURCE["uid"]
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "ebrain.yml").read_text())
    compose = yaml.safe_load((ROOT / "compose" / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"../deploy/grafana/dashboards:{provider['providers'][0]['options']['path']}:ro" in mounts


def _promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.skip("promtool not installed (apt-get install prometheus); the YAML checks above still run")
    return tool


def test_promtool_accepts_the_rules_and_their_unit_tests() -> None:
    tool = _promtool()
    check = subprocess.run([tool, "check", "rules", str(PROM / "alerts.yml")], capture_output=True, text=True,
                           timeout=60, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run([tool, "test", "rules", str(PROM / "alerts_test.yml")], capture_output=True, text=True,
                          timeout=60, check=False)
    assert unit.returncode == 0, unit.stdout + unit.stderr


def test_promtool_accepts_the_scrape_config(tmp_path: Path) -> None:
    tool = _promtool()
    shutil.copy(PROM / "alerts.yml", tmp_path / "alerts.yml")
    config = (PROM / "prometheus.yml").read_text().replace("/etc/prometheus/alerts.yml", str(tmp_path / "alerts.yml"))
    (tmp_path / "prometheus.yml").write_text(config)
    check = subprocess.run([tool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True,
                           text=True, timeout=60, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    jobs = {j["job_name"] for j in yaml.safe_load(config)["scrape_configs"]}
    assert {"edge", "gateway", "cloud", "ingest", "vllm", "kafka"} <= jobs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("cls", [GatewaySettings, CloudSettings, IngestSettings, EdgeSettings, TrainerSettings])
def test_metrics_addr_is_a_setting_of_every_service(cls: type[BaseSettings], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EBRAIN_METRICS_ADDR", raising=False)
    assert cls().metrics_addr == "127.0.0.1"  # type: ignore[attr-defined]  # a laptop: loopback only
    monkeypatch.setenv("EBRAIN_METRICS_ADDR", "0.0.0.0")
    monkeypatch.setenv("EBRAIN_METRICS_PORT", "9100")
    settings = cls()
    assert (settings.metrics_addr, settings.metrics_port) == ("0.0.0.0", 9100)  # type: ignore[attr-defined]


@pytest.mark.integration
def test_a_service_serves_metrics_on_the_configured_address_only(mqtt_settings: MqttSettings) -> None:
    """`ebrain gateway run` (through the container entrypoint) binds EBRAIN_METRICS_ADDR, not 127.0.0.1."""
    port, uid = _free_port(), uuid.uuid4().hex[:8]
    env = {**os.environ, "EBRAIN_METRICS_PORT": str(port), "EBRAIN_METRICS_ADDR": "127.0.0.2",
           "EBRAIN_CLIENT_ID": f"metrics-addr-{uid}", "EBRAIN_SHARE_GROUP": f"metrics-addr-{uid}",
           "EBRAIN_MQTT__SESSION_EXPIRY_S": "0",
           # A Kafka that is not there: the gateway keeps retrying it in the background, /metrics is up meanwhile.
           "EBRAIN_KAFKA__BOOTSTRAP": f"127.0.0.1:{_free_port()}",
           "EBRAIN_MQTT__HOST": mqtt_settings.host, "EBRAIN_MQTT__PORT": str(mqtt_settings.port)}
    env.pop("EBRAIN_KAFKA_BOOTSTRAP", None)
    proc = subprocess.Popen([sys.executable, "-m", "ebrain.observability.entry", "--", "gateway", "run"], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not _answers(f"http://127.0.0.2:{port}/metrics"):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            assert time.monotonic() < deadline, "no /metrics on 127.0.0.2"
            time.sleep(0.1)
        assert not _answers(f"http://127.0.0.1:{port}/metrics")
        assert entry.probe(port) == 1  # the probe looks at 127.0.0.1: only 0.0.0.0 (the images' value) serves it
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200 and b"python_info" in response.read()
    except OSError:
        return False


def test_entrypoint_runs_the_ebrain_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ebrain.observability.entry", "--", "gateway", "--help"],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "provision" in proc.stdout
    nothing = subprocess.run([sys.executable, "-m", "ebrain.observability.entry"], capture_output=True, text=True,
                             timeout=60, check=False, cwd=ROOT)
    assert nothing.returncode != 0
    assert "nothing to run" in nothing.stderr


# --- the trainer's rollout verdicts, as the ModelRolloutRolledBack alert and the training dashboard read them ----

class _Orders:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []

    async def publish(self, update: Any, devices: Any) -> int:
        self.sent.append((update.version, len(devices)))
        return len(devices)


class _Window:
    """Telemetry where every device answered 20 requests; canary devices (on `version`) escalated `canary_rate`."""

    def __init__(self, devices: list[str], version: str, canary_rate: float | None) -> None:
        self._devices, self._version, self._rate = devices, version, canary_rate
        self.canary: set[str] = set()

    def samples(self) -> list[Any]:
        from trainers.core.rollout import Sample  # noqa: PLC0415

        if self._rate is None:
            return []  # no telemetry at all: no verdict by the deadline
        out = []
        for device in self._devices:
            on_canary = device in self.canary
            rate = self._rate if on_canary else 0.1
            version = self._version if on_canary else "v0"
            out.append(Sample(device, version, 0.0, {"local": 0.0, "escalated": 0.0}))
            out.append(Sample(device, version, 1.0, {"local": 20 * (1 - rate), "escalated": 20 * rate}))
        return out

    async def wait_new(self, timeout_s: float) -> bool:
        await asyncio.sleep(min(timeout_s, 0.01))
        return False


def _rollouts(verdict: str) -> float:
    from prometheus_client import REGISTRY  # noqa: PLC0415

    return REGISTRY.get_sample_value("ebrain_trainer_rollouts_total", {"verdict": verdict}) or 0.0


@pytest.mark.parametrize(("canary_rate", "verdict"), [(0.1, "promoted"), (0.6, "rolled_back"), (None, "no_verdict")])
async def test_every_rollout_verdict_is_counted(canary_rate: float | None, verdict: str, tmp_path: Path) -> None:
    from trainers.adapters.registry import Registry  # noqa: PLC0415
    from trainers.core.rollout import RolloutConfig, choose_canary  # noqa: PLC0415
    from trainers.rollout import canary_rollout  # noqa: PLC0415

    registry = Registry(tmp_path / "registry")
    for name in ("base", "cand"):
        (tmp_path / name).write_bytes(name.encode() * 100)
    registry.register(tmp_path / "base", parent=None, status="base")
    registry.register(tmp_path / "cand", parent="v0", status="candidate")
    fleet = [("t", f"d{i}") for i in range(8)]
    window = _Window([f"t/d{i}" for i in range(8)], "v1", canary_rate)
    window.canary = set(choose_canary([f"t/{d}" for _, d in fleet], 0.25, seed="v1"))
    before = {v: _rollouts(v) for v in ("promoted", "rolled_back", "no_verdict")}
    result = await canary_rollout(registry, "v1", fleet, publisher=_Orders(), window=window,
                                  config=RolloutConfig(min_requests=10), deadline_s=0.2)
    assert result.verdict == ("promote" if verdict == "promoted" else "rollback")
    after = {v: _rollouts(v) for v in before}
    assert {v: after[v] - before[v] for v in before} == {v: float(v == verdict) for v in before}
