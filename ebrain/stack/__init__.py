"""Local infrastructure for development and tests: MQTT (Mosquitto), Kafka protocol (Tansu), Redis 8.

    from ebrain.stack import up, down, status
    st = up(Path(".ebrain"))          # starts what is missing; idempotent
    st.mqtt_host, st.mqtt_port, st.kafka_bootstrap, st.redis_url
    down(Path(".ebrain"))             # stops only what up started
"""

from ebrain.stack.api import down, status, up
from ebrain.stack.core import Service, ServiceStartError, ServiceUnavailableError, StackError
from ebrain.stack.model import ServiceStatus, StackStatus
from ebrain.stack.settings import StackSettings

__all__ = [
    "Service",
    "ServiceStartError",
    "ServiceStatus",
    "ServiceUnavailableError",
    "StackError",
    "StackSettings",
    "StackStatus",
    "down",
    "status",
    "up",
]
