"""`up`, `down`, `status`: the Python API behind `ebrain stack` (also used by the demo, the Makefile, tests).

Observe each service (pid file, port, configured external server), let the core plan, then act.
"""

from __future__ import annotations

import fcntl
import getpass
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ebrain.stack import binaries, probes, procs
from ebrain.stack.core import (
    REDIS_WARNING,
    TANSU_WARNING,
    Action,
    Endpoint,
    Observation,
    Service,
    ServiceUnavailableError,
    StateLayout,
    failures,
    mosquitto_argv,
    mosquitto_config,
    parse_bootstrap,
    parse_redis_url,
    plan,
    redis_argv,
    tansu_argv,
)
from ebrain.stack.model import ServiceStatus, StackStatus
from ebrain.stack.settings import StackSettings

log = logging.getLogger("ebrain.stack")


@dataclass(frozen=True)
class _Spec:
    service: Service
    local: Endpoint
    external: str | None  # address from the settings (EBRAIN_KAFKA_BOOTSTRAP, EBRAIN_REDIS_URL)
    local_address: str
    parse: Callable[[str], Endpoint]
    answers: Callable[[str], bool]  # given an address: is the server there and ready?
    find: Callable[[], binaries.Found]
    argv: Callable[[str, StateLayout], list[str]]
    warning: str = ""


def _specs(cfg: StackSettings) -> list[_Spec]:
    mqtt = Endpoint(cfg.host, cfg.mqtt_port)
    kafka = Endpoint(cfg.host, cfg.kafka_port)
    redis = Endpoint(cfg.host, cfg.redis_port)

    def tcp(address: str) -> bool:
        return probes.tcp_open(parse_bootstrap(address))

    def mosquitto(binary: str, layout: StateLayout) -> list[str]:
        layout.mosquitto_data.mkdir(parents=True, exist_ok=True)
        auth = cfg.mqtt_auth_dir.resolve() if cfg.mqtt_auth_dir is not None else None
        layout.mosquitto_conf.write_text(mosquitto_config(mqtt, layout.mosquitto_data, getpass.getuser(), auth))
        return mosquitto_argv(binary, layout.mosquitto_conf)

    def redis_cmd(binary: str, layout: StateLayout) -> list[str]:
        layout.redis_data.mkdir(parents=True, exist_ok=True)
        return redis_argv(binary, redis, layout.redis_data)

    return [
        _Spec(Service.MQTT, mqtt, None, str(mqtt), parse_bootstrap, tcp, binaries.mosquitto, mosquitto),
        _Spec(Service.KAFKA, kafka, cfg.kafka_bootstrap, str(kafka), parse_bootstrap, tcp, binaries.tansu,
              lambda b, _: tansu_argv(b, kafka), TANSU_WARNING),
        _Spec(Service.REDIS, redis, cfg.redis_url, f"redis://{redis}/0", parse_redis_url, probes.redis_ping,
              binaries.redis_server, redis_cmd, REDIS_WARNING),
    ]


@contextmanager
def _locked(layout: StateLayout) -> Iterator[None]:
    """One `ebrain stack` command at a time per state directory (two concurrent `up`s start nothing twice)."""
    layout.root.mkdir(parents=True, exist_ok=True)
    with (layout.root / ".lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _settings(state_dir: Path | None, settings: StackSettings | None) -> StackSettings:
    cfg = settings or StackSettings()
    return cfg if state_dir is None else cfg.model_copy(update={"state_dir": state_dir})


def _observe(spec: _Spec, layout: StateLayout, *, need_binary: bool) -> Observation:
    pidfile = layout.pidfile(spec.service)
    rec = procs.read_record(pidfile)
    ours = rec is not None and procs.is_ours(rec)
    stale = pidfile.exists() and not ours
    if spec.external:
        return Observation(spec.service, spec.parse(spec.external), configured_external=True,
                           ours_alive=ours, stale_pidfile=stale, listening=spec.answers(spec.external))
    if ours and rec is not None:
        return Observation(spec.service, Endpoint(rec.host, rec.port), ours_alive=True, listening=True)
    listening = probes.tcp_open(spec.local)
    binary, problem = spec.find() if need_binary and not listening else (None, "")
    return Observation(spec.service, spec.local, stale_pidfile=stale, listening=listening,
                       binary=binary, binary_problem=problem)


def up(state_dir: Path | None = None, *, settings: StackSettings | None = None) -> StackStatus:
    """Start what is not already running; idempotent. Raises ServiceUnavailableError (nothing started) when a
    service can be neither found nor started, ServiceStartError (naming the log) when one does not come up.
    settings default to the environment (StackSettings()); state_dir overrides settings.state_dir."""
    cfg = _settings(state_dir, settings)
    layout = StateLayout(cfg.state_dir.resolve())
    specs = _specs(cfg)
    with _locked(layout):
        observations = [_observe(s, layout, need_binary=True) for s in specs]
        steps = plan(observations)
        for step in steps:
            if step.clean_stale:
                layout.pidfile(step.service).unlink(missing_ok=True)
        problems = failures(steps)
        if problems:
            raise ServiceUnavailableError("\n".join(problems))
        for spec, obs, step in zip(specs, observations, steps, strict=True):
            log.info("stack plan", extra={"service": str(spec.service), "action": str(step.action),
                                          "endpoint": str(step.endpoint), "reason": step.reason})
            if step.action is Action.START and obs.binary is not None:
                _start(spec, obs.binary, layout, cfg)
        return _status(specs, layout)


def _start(spec: _Spec, binary: str, layout: StateLayout, cfg: StackSettings) -> None:
    log_path = layout.log(spec.service)
    argv = spec.argv(binary, layout)
    proc = procs.spawn(argv, log_path)
    rec = procs.PidRecord(proc.pid, procs.identity(proc.pid) or "", argv, spec.local.host, spec.local.port,
                          spec.local_address, str(log_path))
    pidfile = layout.pidfile(spec.service)
    procs.write_record(pidfile, rec)
    try:
        procs.wait_ready(proc, lambda: spec.answers(spec.local_address), str(spec.service), log_path,
                         cfg.ready_timeout_s)
    except Exception:
        procs.stop(rec, cfg.stop_timeout_s)
        pidfile.unlink(missing_ok=True)
        raise


def down(state_dir: Path | None = None, *, settings: StackSettings | None = None) -> list[Service]:
    """Stop only what `up` started (and is still the process it started); return those services.
    External servers are never touched; stale pid files are removed."""
    cfg = _settings(state_dir, settings)
    layout = StateLayout(cfg.state_dir.resolve())
    stopped: list[Service] = []
    with _locked(layout):
        for service in Service:
            pidfile = layout.pidfile(service)
            rec = procs.read_record(pidfile)
            if rec is not None and procs.stop(rec, cfg.stop_timeout_s):
                stopped.append(service)
            pidfile.unlink(missing_ok=True)
    return stopped


def status(state_dir: Path | None = None, *, settings: StackSettings | None = None) -> StackStatus:
    """What serves each endpoint now, and who owns it. Removes stale pid files; starts and stops nothing."""
    cfg = _settings(state_dir, settings)
    layout = StateLayout(cfg.state_dir.resolve())
    with _locked(layout):
        return _status(_specs(cfg), layout)


def _status(specs: list[_Spec], layout: StateLayout) -> StackStatus:
    found = {s.service: _service_status(s, layout) for s in specs}
    return StackStatus(found[Service.MQTT], found[Service.KAFKA], found[Service.REDIS])


def _service_status(spec: _Spec, layout: StateLayout) -> ServiceStatus:
    pidfile = layout.pidfile(spec.service)
    rec = procs.read_record(pidfile)
    ours = rec is not None and procs.is_ours(rec)
    if not ours:
        pidfile.unlink(missing_ok=True)
    if spec.external:
        address, ep = spec.external, spec.parse(spec.external)
        running, managed, pid, log_path = spec.answers(address), False, None, None
    elif ours and rec is not None:
        address, ep = rec.address, Endpoint(rec.host, rec.port)
        running, managed, pid, log_path = True, True, rec.pid, rec.log
    else:
        address, ep = spec.local_address, spec.local
        running, managed, pid, log_path = probes.tcp_open(ep), False, None, None
    vector_sets = probes.redis_vector_sets(address) if running and spec.service is Service.REDIS else None
    warnings = (spec.warning,) if managed and spec.warning else ()
    return ServiceStatus(spec.service, ep, address, running, managed, pid, log_path, vector_sets, warnings)
