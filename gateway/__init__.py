"""The MQTT <-> Kafka gateway: devices publish over MQTT, the cloud reads and writes Kafka."""
