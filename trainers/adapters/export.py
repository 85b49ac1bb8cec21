"""Export a merged model to the edge: llama.cpp's converter, llama.cpp's quantize API, sha256.

The converter is llama.cpp's own `convert_hf_to_gguf.py` (with its `conversion/` package and `gguf-py`),
taken from the llama-cpp-python sdist of the exact version the edge runs, so the GGUF it writes is one that
llama.cpp build reads. It is fetched once with `pip download` (like the models in PyPI wheels) into the tools
cache and never installed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

LLAMA_CPP_PYTHON = ("llama-cpp-python", "0.3.36")
_MEMBERS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "LICENSE")
# llama.cpp's llama_ftype values for the quantization types the edge uses.
FTYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7, "q5_0": 8, "q5_1": 9, "q4_k_m": 15}


class ExportError(RuntimeError):
    """Fatal for this round: the converter or the quantizer failed; the message carries their output."""


def converter_dir(tools_dir: Path) -> Path:
    """Where the converter of the pinned llama.cpp version lives (fetched on first use)."""
    name, version = LLAMA_CPP_PYTHON
    return tools_dir / f"{name}-{version}-convert"


def ensure_converter(tools_dir: Path) -> Path:
    """The converter directory, downloading the sdist and extracting only the converter on first use."""
    target = converter_dir(tools_dir)
    if (target / "convert_hf_to_gguf.py").is_file():
        return target
    name, version = LLAMA_CPP_PYTHON
    tools_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tools_dir) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               f"{name}=={version}", "-d", tmp, "-q"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        sdists = list(Path(tmp).glob("*.tar.gz"))
        if done.returncode != 0 or not sdists:
            raise ExportError(f"pip download {name}=={version} failed: {done.stderr[-2000:]}")
        staging = Path(tmp) / "convert"
        _extract(sdists[0], staging)
        staging.replace(target)  # atomic: a half-extracted converter is never seen
    log.info("converter fetched", extra={"dir": str(target)})
    return target


def _extract(sdist: Path, out: Path) -> None:
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            parts = member.name.split("/", 3)  # pkg-ver/vendor/llama.cpp/<rest>
            if len(parts) < 4 or parts[1:3] != ["vendor", "llama.cpp"]:
                continue
            rest = parts[3]
            if not any(rest == m or (m.endswith("/") and rest.startswith(m)) for m in _MEMBERS):
                continue
            if not (member.isfile() or member.isdir()):
                continue  # no links out of the tree
            member.name = rest
            tar.extract(member, out, filter="data")


def convert(hf_dir: Path, parent_gguf: Path, out: Path, *, tools_dir: Path, outtype: str = "f16") -> Path:
    """HF directory -> GGUF at `out` (f32/f16/bf16/q8_0) with the parent's tokenizer. Raises ExportError."""
    tool = ensure_converter(tools_dir)
    cmd = [sys.executable, "-m", "trainers.adapters.convert_main", str(tool), str(parent_gguf), "--",
           str(hf_dir), "--outfile", str(out), "--outtype", outtype]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                        os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0 or not out.is_file():
        raise ExportError(f"convert_hf_to_gguf failed ({done.returncode}): {done.stderr[-3000:]}")
    return out


def quantize(src: Path, out: Path, ftype: str, *, threads: int = 2) -> Path:
    """Quantize with llama.cpp's `llama_model_quantize` (the library the edge runs). Raises ExportError."""
    import llama_cpp  # noqa: PLC0415

    if ftype not in FTYPES:
        raise ValueError(f"unknown quantization {ftype!r}: expected one of {sorted(FTYPES)}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[ftype]
    params.nthread = threads
    part = out.with_name(out.name + ".part")
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(part).encode(), params)
    if rc != 0 or not part.is_file():
        part.unlink(missing_ok=True)
        raise ExportError(f"llama_model_quantize {src} -> {ftype} returned {rc}")
    part.replace(out)
    return out


def file_type(path: Path) -> int | None:
    """The GGUF's `general.file_type` (llama.cpp's llama_ftype number), or None when it does not say."""
    import gguf  # noqa: PLC0415

    field = gguf.GGUFReader(path).fields.get("general.file_type")
    if field is None:
        return None
    value = field.contents()
    return int(value) if isinstance(value, int) else None


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def copy_atomic(src: Path, dst: Path) -> Path:
    """Copy then rename, so a reader never sees half a model."""
    part = dst.with_name(dst.name + ".part")
    shutil.copyfile(src, part)
    part.replace(dst)
    return dst
