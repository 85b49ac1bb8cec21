"""Download one file from a Hugging Face model repo: resumable, verified, atomic.

`https://huggingface.co/{repo}/resolve/{revision}/{filename}` answers LFS files with a redirect to a CDN
that carries `X-Linked-Etag` (the file's sha256) and `X-Linked-Size`; the bytes are streamed into
`<dest>.part`, resumed with an HTTP Range request after an interruption, checked, then renamed into place.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx

from ebrain.models.store import (
    CHUNK,
    ModelFetchError,
    ModelVerifyError,
    part_path,
    recorded_sha256,
    write_sidecar,
)

log = logging.getLogger(__name__)

HF_URL = "https://huggingface.co"
_T = TypeVar("_T")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CONTENT_RANGE = re.compile(r"^bytes (?:(\d+)-\d+|\*)/(\d+|\*)$")


@dataclass(frozen=True, slots=True)
class _Expected:
    size: int | None
    sha256: str | None


def hf_cache_path(dest_dir: Path, repo: str, filename: str) -> Path:
    """Where `pull_hf` keeps `filename` of `repo`: one folder per repo, so equal file names do not clash."""
    return dest_dir / repo.replace("/", "--") / filename


def pull_hf(
    repo: str,
    filename: str,
    dest_dir: Path,
    *,
    revision: str = "main",
    token: str | None = None,
    base_url: str = HF_URL,
    attempts: int = 3,
    timeout_s: float = 30.0,
) -> Path:
    """Download `filename` from `repo` at `revision` into `dest_dir` and return its path.

    A file already there with its sha256 sidecar is returned without a request. A `.part` left by an
    earlier run is resumed. Transport errors are retried `attempts` times, each resuming where the last
    stopped. Raises ModelFetchError on HTTP errors, exhausted attempts, or a size / sha256 mismatch
    (the sha256 is checked when the server's linked ETag is one, as it is for LFS files).
    """
    dest = hf_cache_path(dest_dir, repo, filename)
    if dest.is_file() and recorded_sha256(dest):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    url = f"{base_url.rstrip('/')}/{repo}/resolve/{revision}/{filename}"
    headers = {"User-Agent": "enterprise-brain"}
    if token:
        headers["Authorization"] = f"Bearer {token}"  # httpx drops it on redirects to another host
    with httpx.Client(follow_redirects=True, timeout=timeout_s, headers=headers) as client:
        for attempt in range(1, attempts + 1):
            try:
                digest = _download(client, url, part_path(dest))
                break
            except httpx.TransportError as exc:
                log.warning("download interrupted", extra={"url": url, "attempt": attempt, "error": str(exc)})
                if attempt == attempts:
                    raise ModelFetchError(f"{url}: {exc} (after {attempts} attempts)") from exc
    os.replace(part_path(dest), dest)
    write_sidecar(dest, digest)
    log.info("model ready", extra={"url": url, "path": str(dest), "sha256": digest})
    return dest


def download_verified(
    url: str, dest: Path, *, sha256: str, size: int, attempts: int = 3, timeout_s: float = 30.0
) -> Path:
    """Download `url` to `dest` (resuming `<dest>.part` with HTTP Range), check `size` and `sha256`, rename.

    What OTA updates use: the expected digest comes from the order, not from the server. Raises
    ModelVerifyError when the bytes differ (the partial file is deleted), ModelFetchError on transport or
    HTTP errors after `attempts` tries.
    """
    if dest.is_file() and recorded_sha256(dest) == sha256 and dest.stat().st_size == size:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    with httpx.Client(follow_redirects=True, timeout=timeout_s, headers={"User-Agent": "enterprise-brain"}) as client:
        for attempt in range(1, attempts + 1):
            try:
                digest = _download(client, url, part)
                break
            except httpx.TransportError as exc:
                log.warning("download interrupted", extra={"url": url, "attempt": attempt, "error": str(exc)})
                if attempt == attempts:
                    raise ModelFetchError(f"{url}: {exc} (after {attempts} attempts)") from exc
    got = part.stat().st_size
    if got != size or digest != sha256:
        part.unlink(missing_ok=True)
        raise ModelVerifyError(f"{url}: got {got} bytes sha256 {digest}, expected {size} bytes sha256 {sha256}")
    os.replace(part, dest)
    write_sidecar(dest, digest)
    return dest


def _download(client: httpx.Client, url: str, part: Path) -> str:
    """Fetch into `part`, resuming from its current size; return the verified sha256 of the whole file."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with client.stream("GET", url, headers=headers) as response:
        expected = _expected(response)
        if response.status_code == 416 and offset and expected.size == offset:
            return _verify(part, _hash_prefix(part, offset), expected)  # the .part was already complete
        if response.status_code not in (200, 206):
            if response.status_code == 416:
                part.unlink(missing_ok=True)  # stale partial larger than the file: start over next time
            raise ModelFetchError(f"{url}: HTTP {response.status_code}")
        if response.status_code == 200:
            offset = 0  # the server ignored the Range header and sends the whole file
        elif _range_start(response) != offset:
            got = response.headers["content-range"]
            raise ModelFetchError(f"{url}: asked for bytes from {offset}, got {got}")
        if offset:
            log.info("resuming download", extra={"url": url, "offset": offset})
        digest = _hash_prefix(part, offset)
        with part.open("r+b" if offset else "wb") as out:
            out.seek(offset)
            out.truncate()
            for block in response.iter_bytes():  # as it arrives: an interruption keeps what came
                digest.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
    return _verify(part, digest, expected)


def _verify(part: Path, digest: hashlib._Hash, expected: _Expected) -> str:
    size = part.stat().st_size
    sha = digest.hexdigest()
    if (expected.size is not None and size != expected.size) or (expected.sha256 not in (None, sha)):
        part.unlink(missing_ok=True)
        raise ModelFetchError(
            f"{part.name}: got {size} bytes sha256 {sha}, "
            f"expected {expected.size} bytes sha256 {expected.sha256}"
        )
    return sha


def _hash_prefix(part: Path, length: int) -> hashlib._Hash:
    digest = hashlib.sha256()
    if length:
        with part.open("rb") as f:
            while length > 0 and (block := f.read(min(CHUNK, length))):
                digest.update(block)
                length -= len(block)
    return digest


def _expected(response: httpx.Response) -> _Expected:
    """Size and sha256 announced anywhere along the redirect chain (HF puts them on the redirect)."""
    chain = [*response.history, response]
    sha = _first(_etag_sha(r.headers.get(name)) for r in chain for name in ("x-linked-etag", "etag"))
    size = _first(_int(r.headers.get("x-linked-size")) for r in chain)
    if size is None:
        size = _total_size(response)
    return _Expected(size, sha)


def _total_size(response: httpx.Response) -> int | None:
    match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
    if match:
        return _int(match.group(2))
    if response.status_code == 200:
        return _int(response.headers.get("content-length"))
    return None


def _range_start(response: httpx.Response) -> int:
    match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
    return int(match.group(1)) if match and match.group(1) else 0


def _etag_sha(value: str | None) -> str | None:
    if not value:
        return None
    tag = value.removeprefix("W/").strip('"').lower()
    return tag if _SHA256.match(tag) else None


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _first(values: Iterable[_T | None]) -> _T | None:
    return next((v for v in values if v is not None), None)
