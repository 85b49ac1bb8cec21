"""The on-disk model cache: GGUF files with a `sha256sum`-style sidecar, written atomically."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20


class ModelFetchError(RuntimeError):
    """Fetching a model failed (network, pip, disk) or it failed verification; retrying may help."""


class ModelVerifyError(ModelFetchError):
    """The bytes arrived but are not the ones ordered (size or sha256 differ): do not use them."""


@dataclass(frozen=True, slots=True)
class CachedModel:
    path: Path
    size: int
    sha256: str | None


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def sidecar(path: Path) -> Path:
    """Where the sha256 of a cached model is recorded."""
    return path.with_name(path.name + ".sha256")


def part_path(path: Path) -> Path:
    """Where a model is written before the atomic rename into `path`."""
    return path.with_name(path.name + ".part")


def write_sidecar(path: Path, sha256: str) -> None:
    side = sidecar(path)
    tmp = part_path(side)
    tmp.write_text(f"{sha256}  {path.name}\n")
    os.replace(tmp, side)


def recorded_sha256(path: Path) -> str | None:
    """The sha256 recorded next to `path`, or None."""
    side = sidecar(path)
    if not side.is_file():
        return None
    words = side.read_text().split()
    return words[0] if words else None


def list_cached(cache_dir: Path) -> list[CachedModel]:
    """Every finished `*.gguf` under `cache_dir` (partial downloads are `.part` and not listed)."""
    if not cache_dir.is_dir():
        return []
    return [
        CachedModel(p, p.stat().st_size, recorded_sha256(p))
        for p in sorted(cache_dir.rglob("*.gguf"))
        if p.is_file()
    ]
