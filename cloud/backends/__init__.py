"""Inference backends speaking the OpenAI-compatible HTTP API: vLLM (primary) and llama.cpp server (replica)."""

from cloud.backends.openai import OpenAIBackend
from cloud.backends.ports import Backend, BackendInvalid, BackendTimeout

__all__ = ["Backend", "BackendInvalid", "BackendTimeout", "OpenAIBackend"]
