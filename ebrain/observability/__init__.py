"""Fleet observability: W3C trace context per hop, the container entrypoint (MQTT credentials), dashboards."""
