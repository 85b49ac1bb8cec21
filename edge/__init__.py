"""The edge agent: answers locally with a small GGUF model, escalates what it cannot answer well."""
