"""What `ebrain stack` reports: one `ServiceStatus` per service and the `StackStatus` clients connect with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ebrain.stack.core import Endpoint, Service, redact_url


@dataclass(frozen=True)
class ServiceStatus:
    service: Service
    endpoint: Endpoint  # the host:port that was probed
    address: str  # what clients use: host:port, a Kafka bootstrap list, or a Redis URL
    running: bool
    managed: bool  # True: started by `ebrain stack up` (and `down` will stop it)
    pid: int | None = None
    log: str | None = None
    vector_sets: bool | None = None  # Redis only: VADD works
    warnings: tuple[str, ...] = ()

    @property
    def owner(self) -> str:
        if self.managed:
            return "ebrain"
        return "external" if self.running else "-"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "endpoint": str(self.endpoint),
            "managed": self.managed,
            "running": self.running,
            "pid": self.pid,
        }
        if self.service is Service.KAFKA:
            out["bootstrap"] = self.address
        if self.service is Service.REDIS:
            out["url"] = redact_url(self.address)
            out["vector_sets"] = self.vector_sets
        if self.log:
            out["log"] = self.log
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out

    def human(self) -> str:
        state = "running" if self.running else "stopped"
        pid = f"pid {self.pid}" if self.pid else "pid -"
        line = f"{self.service:<6} {self.endpoint!s:<22} {state:<8} {self.owner:<8} {pid}"
        if self.vector_sets is not None:
            line += f"  vector_sets: {str(self.vector_sets).lower()}"
        return line + "".join(f"\n       warning: {w}" for w in self.warnings)


@dataclass(frozen=True)
class StackStatus:
    mqtt: ServiceStatus
    kafka: ServiceStatus
    redis: ServiceStatus

    @property
    def services(self) -> tuple[ServiceStatus, ServiceStatus, ServiceStatus]:
        return (self.mqtt, self.kafka, self.redis)

    @property
    def mqtt_host(self) -> str:
        return self.mqtt.endpoint.host

    @property
    def mqtt_port(self) -> int:
        return self.mqtt.endpoint.port

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka.address

    @property
    def redis_url(self) -> str:
        """The full URL (with any password): for clients, not for printing."""
        return self.redis.address

    @property
    def all_running(self) -> bool:
        return all(s.running for s in self.services)

    def to_json(self) -> dict[str, Any]:
        return {s.service.value: s.to_json() for s in self.services}

    def human(self) -> str:
        return "\n".join(s.human() for s in self.services)
