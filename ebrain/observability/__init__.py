"""Fleet observability: the container entrypoint (metrics on all interfaces, MQTT credentials) and dashboards."""
