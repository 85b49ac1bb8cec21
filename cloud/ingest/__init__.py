"""Training-data ingestion: PII-filtered records from Kafka into a versioned Parquet dataset (issue 6).

`core/` is pure (rules, placeholders, normalization, quality, joins); `adapters/` wrap Presidio, datasketch,
pyarrow and Kafka; `app.py` wires them; `cli.py` is `ebrain data`.
"""
