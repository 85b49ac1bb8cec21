"""Adapters around the pure core: Presidio, datasketch, pyarrow, Kafka."""
