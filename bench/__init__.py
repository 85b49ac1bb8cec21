"""Benchmarks: each module's `run(...)` returns a JSON-able dict, printed by `ebrain bench NAME --json`."""
