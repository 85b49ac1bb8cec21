"""Prometheus exposition: each process serves its registry on its own port (0 = do not serve)."""

from __future__ import annotations

import logging

from prometheus_client import start_http_server

log = logging.getLogger(__name__)


def serve(port: int, addr: str = "127.0.0.1") -> None:
    """Start the /metrics endpoint in a daemon thread when `port` is non-zero."""
    if port:
        start_http_server(port, addr=addr)
        log.info("metrics endpoint up", extra={"addr": addr, "port": port})
