"""Dashboards, alert rules and the container entrypoint: every series they name is one the code exports (or a
known exporter's), the checked-in JSON is what the generator writes, and promtool accepts and unit-tests the rules.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from ebrain.observability import dashboards, entry

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
    bad = [n for n in names if not re.fullmatch(r"ebrain_(edge|gateway|cloud|ingest|mqtt|llama)_[a-z0-9_]+", n)]
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
            "ModelRolloutRolledBack"} <= set(alerts)
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


def test_entrypoint_serves_metrics_on_the_given_address_and_turns_the_commands_own_off() -> None:
    port = _free_port()
    env: dict[str, str] = {"EBRAIN_METRICS_PORT": "9100"}
    command = entry.prepare(["--metrics-port", str(port), "--metrics-addr", "127.0.0.1", "--", "gateway", "run"],
                            env)
    assert command == ["gateway", "run"]
    assert env["EBRAIN_METRICS_PORT"] == "0"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert b"python_info" in response.read()
    assert entry.probe(port) == 0
    assert entry.probe(_free_port()) == 1


def test_entrypoint_runs_the_ebrain_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ebrain.observability.entry", "--metrics-port", str(_free_port()), "--metrics-addr",
         "127.0.0.1", "--", "gateway", "--help"],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "provision" in proc.stdout
    nothing = subprocess.run([sys.executable, "-m", "ebrain.observability.entry"], capture_output=True, text=True,
                             timeout=60, check=False, cwd=ROOT)
    assert nothing.returncode != 0
    assert "nothing to run" in nothing.stderr
