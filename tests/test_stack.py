"""`ebrain stack`: unit tests of the pure plan, then real Mosquitto, Tansu and Redis 8 on free ports."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from ebrain.stack import (
    Service,
    ServiceStartError,
    ServiceUnavailableError,
    StackSettings,
    binaries,
    core,
    down,
    procs,
    status,
    up,
)
from ebrain.stack.cli import app
from ebrain.stack.core import Action, Endpoint, Observation, plan_service
from ebrain.stack.model import ServiceStatus, StackStatus

LOCAL = Endpoint("127.0.0.1", 19092)

# ---------------------------------------------------------------- pure core


def test_plan_starts_when_nothing_listens() -> None:
    step = plan_service(Observation(Service.KAFKA, LOCAL, binary="/bin/tansu"))
    assert (step.action, step.clean_stale) == (Action.START, False)


def test_plan_keeps_ours_and_cleans_stale() -> None:
    ours = Observation(Service.KAFKA, LOCAL, ours_alive=True, listening=True)
    assert plan_service(ours).action is Action.KEEP
    stale = plan_service(Observation(Service.KAFKA, LOCAL, stale_pidfile=True, binary="/bin/tansu"))
    assert (stale.action, stale.clean_stale) == (Action.START, True)


def test_plan_uses_whatever_already_listens() -> None:
    step = plan_service(Observation(Service.MQTT, Endpoint("127.0.0.1", 1883), listening=True))
    assert step.action is Action.EXTERNAL


def test_plan_configured_external_must_answer() -> None:
    ok = Observation(Service.REDIS, LOCAL, configured_external=True, listening=True, binary="/x")
    assert plan_service(ok).action is Action.EXTERNAL
    dead = plan_service(Observation(Service.REDIS, LOCAL, configured_external=True, binary="/x"))
    assert dead.action is Action.FAIL
    assert "does not answer" in dead.reason


def test_plan_missing_binary_says_how_to_get_one() -> None:
    step = plan_service(Observation(Service.MQTT, Endpoint("127.0.0.1", 1883), binary_problem="no mosquitto"))
    assert step.action is Action.FAIL
    assert "apt-get install mosquitto" in step.reason
    assert "brew install mosquitto" in step.reason
    assert core.failures([step]) == [step.reason]


def test_argv_and_config_builders(tmp_path: Path) -> None:
    ep = Endpoint("127.0.0.1", 19092)
    assert core.tansu_argv("tansu", ep) == [
        "tansu", "broker", "--listener-url", "tcp://127.0.0.1:19092",
        "--advertised-listener-url", "tcp://127.0.0.1:19092", "--storage-engine", "memory://tansu/"]
    redis = core.redis_argv("redis-server", Endpoint("127.0.0.1", 6390), tmp_path)
    assert redis[redis.index("--save") + 1] == ""
    assert redis[redis.index("--appendonly") + 1] == "no"
    conf = core.mosquitto_config(Endpoint("127.0.0.1", 1883), tmp_path / "m", "alice").splitlines()
    assert "listener 1883 127.0.0.1" in conf
    assert "allow_anonymous true" in conf
    assert f"persistence_location {tmp_path / 'm'}/" in conf


def test_mosquitto_config_with_provisioned_auth(tmp_path: Path) -> None:
    conf = core.mosquitto_config(Endpoint("127.0.0.1", 1883), tmp_path / "m", "alice", tmp_path / "auth").splitlines()
    assert "allow_anonymous false" in conf
    assert "allow_anonymous true" not in conf
    assert f"password_file {tmp_path / 'auth' / 'mosquitto.passwd'}" in conf
    assert f"acl_file {tmp_path / 'auth' / 'mosquitto.acl'}" in conf


def test_up_mqtt_auth_option_reaches_the_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ebrain.stack import cli  # noqa: PLC0415

    assert cli._settings(None, tmp_path).mqtt_auth_dir == tmp_path
    monkeypatch.setenv("EBRAIN_STACK_MQTT_AUTH_DIR", str(tmp_path / "env"))
    assert StackSettings().mqtt_auth_dir == tmp_path / "env"


def test_parsers() -> None:
    assert core.parse_redis_version("Redis server v=8.2.3 sha=b5d43ceb:0 malloc=jemalloc") == (8, 2, 3)
    assert core.parse_redis_version("garbage") is None
    assert core.parse_bootstrap("k1:9093, k2:9094") == Endpoint("k1", 9093)
    assert core.parse_bootstrap("kafka") == Endpoint("kafka", 9092)
    assert core.parse_redis_url("redis://:pw@h:7000/2") == Endpoint("h", 7000)
    assert core.redact_url("redis://user:secret@h:7000/2") == "redis://user:***@h:7000/2"
    assert core.redact_url("redis://h:7000") == "redis://h:7000"


@given(st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True), st.integers(1, 65535))
def test_parse_bootstrap_round_trip(host: str, port: int) -> None:
    assert core.parse_bootstrap(f"{host}:{port},other:1") == Endpoint(host, port)


def test_status_json_and_client_properties() -> None:
    def svc(s: Service, port: int, address: str, **kw: object) -> ServiceStatus:
        return ServiceStatus(s, Endpoint("127.0.0.1", port), address, running=True, **kw)  # type: ignore[arg-type]

    st_ = StackStatus(
        svc(Service.MQTT, 1883, "127.0.0.1:1883", managed=False),
        svc(Service.KAFKA, 19092, "127.0.0.1:19092", managed=True, pid=7, warnings=(core.TANSU_WARNING,)),
        svc(Service.REDIS, 6390, "redis://:pw@127.0.0.1:6390/0", managed=True, pid=8, vector_sets=True),
    )
    assert (st_.mqtt_host, st_.mqtt_port, st_.kafka_bootstrap) == ("127.0.0.1", 1883, "127.0.0.1:19092")
    assert st_.redis_url == "redis://:pw@127.0.0.1:6390/0"
    out = json.loads(json.dumps(st_.to_json()))
    assert out["mqtt"] == {"endpoint": "127.0.0.1:1883", "managed": False, "running": True, "pid": None}
    assert out["kafka"]["warnings"] == [core.TANSU_WARNING]
    assert out["redis"]["url"] == "redis://:***@127.0.0.1:6390/0"  # never print the password
    assert "external" in st_.human().splitlines()[0]


# ---------------------------------------------------------------- real processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait_until(cond: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met in {timeout_s}s")
        time.sleep(0.05)


def _start_external(argv: list[str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    _wait_until(lambda: _listening(port))
    return proc


@pytest.fixture
def external_mqtt(tmp_path: Path) -> Iterator[int]:
    """A Mosquitto that `ebrain stack` did not start, on a free port."""
    binary, why = binaries.mosquitto()
    if binary is None:
        pytest.skip(why)
    port = _free_port()
    conf = tmp_path / "external-mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    proc = _start_external([binary, "-c", str(conf)], port, tmp_path / "external-mosquitto.log")
    yield port
    assert proc.poll() is None, "the external broker must still be running: down must never stop it"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def cfg(tmp_path: Path, external_mqtt: int) -> Iterator[StackSettings]:
    """Settings on free ports, external servers unset whatever the environment says; `down` at teardown."""
    settings = StackSettings(state_dir=tmp_path / "state", kafka_bootstrap=None, redis_url=None,
                             mqtt_port=external_mqtt, kafka_port=_free_port(), redis_port=_free_port())
    yield settings
    down(settings=settings)



@pytest.mark.integration
def test_up_starts_what_is_missing_and_reuses_external_mqtt(cfg: StackSettings) -> None:
    st_ = up(settings=cfg)
    assert st_.all_running
    assert (st_.mqtt.managed, st_.mqtt.pid, st_.mqtt_port) == (False, None, cfg.mqtt_port)
    assert st_.kafka.managed
    assert st_.kafka.pid
    assert st_.kafka_bootstrap == f"127.0.0.1:{cfg.kafka_port}"
    assert st_.redis.managed
    assert st_.redis.pid
    assert st_.redis_url == f"redis://127.0.0.1:{cfg.redis_port}/0"
    assert st_.redis.vector_sets is True
    assert core.TANSU_WARNING in st_.kafka.warnings
    assert not cfg.state_dir.joinpath("mqtt.pid").exists()


@pytest.mark.integration
def test_up_twice_is_harmless(cfg: StackSettings) -> None:
    first = up(settings=cfg)
    pidfiles = {s: cfg.state_dir.joinpath(f"{s}.pid").read_text() for s in ("kafka", "redis")}
    second = up(settings=cfg)
    assert [s.pid for s in second.services] == [s.pid for s in first.services]
    assert {s: cfg.state_dir.joinpath(f"{s}.pid").read_text() for s in ("kafka", "redis")} == pidfiles
    assert status(settings=cfg) == second


@pytest.mark.integration
def test_vector_sets_work_on_the_started_redis(cfg: StackSettings) -> None:
    redis = pytest.importorskip("redis")
    st_ = up(settings=cfg)
    client = redis.Redis.from_url(st_.redis_url)
    try:
        assert client.execute_command("VADD", "t:vec", "VALUES", 3, 1.0, 0.0, 0.0, "a") == 1
        assert client.execute_command("VADD", "t:vec", "VALUES", 3, 0.0, 1.0, 0.0, "b") == 1
        nearest = client.execute_command("VSIM", "t:vec", "VALUES", 3, 0.9, 0.1, 0.0, "COUNT", 1)
        assert nearest == [b"a"]
    finally:
        client.close()


@pytest.mark.integration
def test_down_stops_only_what_up_started(cfg: StackSettings) -> None:
    st_ = up(settings=cfg)
    records = [procs.read_record(cfg.state_dir / f"{s}.pid") for s in ("kafka", "redis")]
    assert down(settings=cfg) == [Service.KAFKA, Service.REDIS]
    for rec in records:
        assert rec is not None
        _wait_until(lambda r=rec: procs.identity(r.pid) is None)  # type: ignore[misc]
    assert not _listening(cfg.kafka_port)
    assert not _listening(cfg.redis_port)
    assert _listening(st_.mqtt_port)  # the external broker is untouched (the fixture checks its process too)
    after = status(settings=cfg)
    assert (after.kafka.running, after.redis.running, after.mqtt.running) == (False, False, True)
    assert down(settings=cfg) == []


@pytest.mark.integration
def test_default_mqtt_port_1883_is_used_not_owned(cfg: StackSettings) -> None:
    if not _listening(1883):
        pytest.skip("no broker on 127.0.0.1:1883 on this machine")
    on_1883 = cfg.model_copy(update={"mqtt_port": 1883})
    st_ = up(settings=on_1883)
    assert (st_.mqtt.endpoint.port, st_.mqtt.managed, st_.mqtt.running) == (1883, False, True)
    assert Service.MQTT not in down(settings=on_1883)
    assert _listening(1883)


@pytest.mark.integration
def test_up_starts_mosquitto_when_no_broker_listens(cfg: StackSettings) -> None:
    own = cfg.model_copy(update={"mqtt_port": _free_port()})
    paho = pytest.importorskip("paho.mqtt.client")
    st_ = up(settings=own)
    assert (st_.mqtt.managed, st_.mqtt.running) == (True, True)
    assert st_.mqtt.pid
    conf = (own.state_dir / "mosquitto.conf").read_text()
    assert "allow_anonymous true" in conf
    assert f"persistence_location {own.state_dir / 'mosquitto'}/" in conf
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    assert client.connect("127.0.0.1", st_.mqtt_port) == 0  # anonymous local-dev access
    client.disconnect()
    assert Service.MQTT in down(settings=own)
    _wait_until(lambda: not _listening(st_.mqtt_port))


@pytest.mark.integration
def test_stale_pid_file_is_cleaned(cfg: StackSettings) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    cfg.state_dir.mkdir(parents=True)
    pidfile = cfg.state_dir / "kafka.pid"
    procs.write_record(pidfile, procs.PidRecord(gone.pid, "/x 1", ["/x"], "127.0.0.1", cfg.kafka_port,
                                                f"127.0.0.1:{cfg.kafka_port}", "log"))
    st_ = status(settings=cfg)
    assert (st_.kafka.running, st_.kafka.managed) == (False, False)
    assert not pidfile.exists()
    assert up(settings=cfg).kafka.pid not in (None, gone.pid)


@pytest.mark.integration
def test_down_never_signals_a_process_that_is_not_ours(cfg: StackSettings) -> None:
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        cfg.state_dir.mkdir(parents=True)
        ident = procs.identity(stranger.pid)
        assert ident is not None
        # The pid was reused: same number, another process (a different start time / executable).
        procs.write_record(cfg.state_dir / "redis.pid", procs.PidRecord(
            stranger.pid, ident + "0", ["redis-server"], "127.0.0.1", cfg.redis_port, "redis://x", "log"))
        assert down(settings=cfg) == []
        assert stranger.poll() is None
        assert not (cfg.state_dir / "redis.pid").exists()
    finally:
        stranger.kill()
        stranger.wait()


@pytest.mark.integration
def test_configured_external_redis_is_pinged_and_used(cfg: StackSettings, tmp_path: Path) -> None:
    binary, why = binaries.redis_server()
    if binary is None:
        pytest.skip(why)
    port = _free_port()
    ext = _start_external([binary, "--port", str(port), "--save", "", "--appendonly", "no",
                           "--dir", str(tmp_path)], port, tmp_path / "external-redis.log")
    try:
        settings = cfg.model_copy(update={"redis_url": f"redis://127.0.0.1:{port}/0"})
        st_ = up(settings=settings)
        assert (st_.redis.managed, st_.redis.running, st_.redis.vector_sets) == (False, True, True)
        assert st_.redis_url == f"redis://127.0.0.1:{port}/0"
        assert down(settings=settings) == [Service.KAFKA]
        assert ext.poll() is None
    finally:
        ext.terminate()
        ext.wait(timeout=10)


@pytest.mark.integration
def test_redis_without_vector_sets_is_reported(cfg: StackSettings) -> None:
    url = "redis://127.0.0.1:6379/0"
    if not _listening(6379):
        pytest.skip("no Redis 7 on 127.0.0.1:6379 on this machine")
    st_ = status(settings=cfg.model_copy(update={"redis_url": url}))
    assert st_.redis.running
    if st_.redis.vector_sets:
        pytest.skip("the Redis on 6379 already has vector sets")
    assert st_.redis.vector_sets is False


@pytest.mark.integration
def test_configured_kafka_that_does_not_answer_starts_nothing(cfg: StackSettings) -> None:
    dead = f"127.0.0.1:{_free_port()}"
    with pytest.raises(ServiceUnavailableError, match=dead):
        up(settings=cfg.model_copy(update={"kafka_bootstrap": dead}))
    assert not _listening(cfg.redis_port)
    assert list(cfg.state_dir.glob("*.pid")) == []


@pytest.mark.integration
def test_a_server_that_dies_is_reported_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "boom.log"
    proc = procs.spawn(["sh", "-c", "echo boom: bad config; exit 3"], log)
    with pytest.raises(ServiceStartError, match="exited with code 3") as err:
        procs.wait_ready(proc, lambda: False, "boom", log, timeout_s=10)
    assert str(log) in str(err.value)
    assert "boom: bad config" in str(err.value)


@pytest.mark.integration
def test_a_server_that_never_gets_ready_times_out(tmp_path: Path) -> None:
    log = tmp_path / "slow.log"
    proc = procs.spawn(["sleep", "60"], log)
    rec = procs.PidRecord(proc.pid, procs.identity(proc.pid) or "", ["sleep"], "h", 1, "a", str(log))
    with pytest.raises(ServiceStartError, match="not ready after"):
        procs.wait_ready(proc, lambda: False, "slow", log, timeout_s=0.3)
    assert procs.stop(rec, timeout_s=5)
    assert procs.identity(proc.pid) is None


@pytest.mark.integration
def test_cli_up_status_down_json(cfg: StackSettings) -> None:
    env = {"EBRAIN_STATE_DIR": str(cfg.state_dir), "EBRAIN_KAFKA_BOOTSTRAP": None, "EBRAIN_REDIS_URL": None,
           "EBRAIN_STACK_MQTT_PORT": str(cfg.mqtt_port), "EBRAIN_STACK_KAFKA_PORT": str(cfg.kafka_port),
           "EBRAIN_STACK_REDIS_PORT": str(cfg.redis_port)}
    runner = CliRunner()
    result = runner.invoke(app, ["up", "--json"], env=env)
    assert result.exit_code == 0, result.output
    started = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(started) == {"mqtt", "kafka", "redis"}
    assert started["mqtt"]["managed"] is False
    assert (started["kafka"]["running"], started["kafka"]["managed"]) == (True, True)
    result = runner.invoke(app, ["status", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["redis"]["vector_sets"] is True
    assert "kafka" in runner.invoke(app, ["down"], env=env).stdout
    for command in ("up", "down", "status"):
        assert "--help" in runner.invoke(app, [command, "--help"]).stdout
