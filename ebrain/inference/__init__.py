"""The inference port shared by the edge and the cloud, and its llama.cpp adapter."""

from ebrain.inference.ports import Completion, Engine, EngineOverloaded, EngineUnavailable

__all__ = ["Completion", "Engine", "EngineOverloaded", "EngineUnavailable"]
