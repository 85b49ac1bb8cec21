"""enterprise-brain: shared runtime pieces (CLI, config, logs, metrics, broker clients, local stack)."""

__version__ = "0.1.0"
