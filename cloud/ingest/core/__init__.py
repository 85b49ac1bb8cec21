"""The pure core of ingestion: standard library and schemas only, mypy --strict."""
