"""Model files: the tiny generator, the cache, Hugging Face pulls (against a local Range server), the CLI."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from llama_cpp import Llama
from typer.testing import CliRunner

from ebrain.models import resolve_model, split_hf_spec
from ebrain.models.cli import app
from ebrain.models.hub import hf_cache_path, pull_hf
from ebrain.models.store import ModelFetchError, list_cached, part_path, recorded_sha256
from ebrain.models.tiny import write_tiny_llama
from ebrain.models.wheels import GEMMA3_270M, SMOLLM2, is_cached, write_sidecar

# ---------------------------------------------------------------- tiny model


def test_tiny_model_is_deterministic_and_small(tmp_path: Path) -> None:
    a = write_tiny_llama(tmp_path / "a.gguf", seed=0).read_bytes()
    b = write_tiny_llama(tmp_path / "b.gguf", seed=0).read_bytes()
    c = write_tiny_llama(tmp_path / "c.gguf", seed=1).read_bytes()
    assert a == b
    assert a != c
    assert 200_000 < len(a) < 1_000_000
    assert not part_path(tmp_path / "a.gguf").exists()


def test_tiny_model_loads_with_chat_template_and_special_tokens(tmp_path: Path) -> None:
    llm = Llama(str(write_tiny_llama(tmp_path / "t.gguf")), n_ctx=256, n_threads=1, verbose=False)
    try:
        assert "messages" in llm.metadata["tokenizer.chat_template"]
        assert (llm.token_bos(), llm.token_eos()) == (1, 2)
        out = llm.create_chat_completion(
            [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}],
            max_tokens=5,
            temperature=0,
        )
        assert out["choices"][0]["finish_reason"] == "length"  # type: ignore[index]
        assert out["usage"]["completion_tokens"] > 0  # type: ignore[index]
    finally:
        llm.close()


# ---------------------------------------------------------------- specs and cache


def test_resolve_model_specs(tmp_path: Path) -> None:
    tiny = resolve_model("tiny", tmp_path)
    assert tiny == tmp_path / "tiny-llama.gguf"
    assert recorded_sha256(tiny) == hashlib.sha256(tiny.read_bytes()).hexdigest()
    assert resolve_model(str(tiny), tmp_path / "elsewhere") == tiny
    with pytest.raises(ValueError, match="unknown model"):
        resolve_model("no-such-model", tmp_path)
    assert split_hf_spec("hf:owner/repo/sub/dir/m.gguf") == ("owner/repo", "sub/dir/m.gguf")
    with pytest.raises(ValueError, match="hf:OWNER/REPO/FILE"):
        split_hf_spec("hf:owner/m.gguf")


def test_wheel_cache_hit_needs_size_and_recorded_sha(tmp_path: Path) -> None:
    path = tmp_path / SMOLLM2.filename
    path.write_bytes(b"x" * 10)
    write_sidecar(path, SMOLLM2.sha256)
    assert not is_cached(SMOLLM2, tmp_path)  # wrong size
    assert GEMMA3_270M.size == 253_113_024
    suffixes = [p.member.rsplit(".", 1)[-1] for p in GEMMA3_270M.parts]
    assert suffixes == ["part00", "part01", "part02", "part03"]


# ---------------------------------------------------------------- Hugging Face pull


@dataclass
class FakeHub:
    """What the local server serves and what it saw."""

    data: bytes
    etag: str
    fail_after: int | None = None  # abort the first body after this many bytes
    ranges: list[str | None] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)


@pytest.fixture
def hub() -> Iterator[tuple[FakeHub, str]]:
    data = bytes(range(256)) * 4096 + b"tail"  # ~1 MB, more than one chunk
    state = FakeHub(data=data, etag=hashlib.sha256(data).hexdigest())

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path == "/org/model/resolve/main/model.gguf":
                # As huggingface.co does for LFS files: redirect to the CDN with the sha256 as linked ETag.
                self.send_response(302)
                self.send_header("Location", "/cdn/model.gguf")
                self.send_header("X-Linked-Etag", f'"{state.etag}"')
                self.send_header("X-Linked-Size", str(len(state.data)))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.path != "/cdn/model.gguf":
                self.send_error(404)
                return
            state.ranges.append(self.headers.get("Range"))
            state.auth.append(self.headers.get("Authorization"))
            start = 0
            match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if match:
                start = int(match.group(1))
                if start >= len(state.data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(state.data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(state.data) - 1}/{len(state.data)}")
            else:
                self.send_response(200)
            body = state.data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if state.fail_after is not None:
                self.wfile.write(body[: state.fail_after])
                state.fail_after = None
                self.close_connection = True
                return  # short body: the client sees the connection end early
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_pull_hf_downloads_verifies_and_caches(hub: tuple[FakeHub, str], tmp_path: Path) -> None:
    state, url = hub
    path = pull_hf("org/model", "model.gguf", tmp_path, base_url=url, token="secret")
    assert path == hf_cache_path(tmp_path, "org/model", "model.gguf")
    assert path.read_bytes() == state.data
    assert recorded_sha256(path) == state.etag
    assert state.ranges == [None]
    assert state.auth == ["Bearer secret"]  # same origin here; httpx drops it on a redirect to another host
    assert pull_hf("org/model", "model.gguf", tmp_path, base_url=url) == path
    assert len(state.ranges) == 1  # cached: no second request
    assert [m.path for m in list_cached(tmp_path)] == [path]


def test_pull_hf_resumes_a_partial_file_with_range(hub: tuple[FakeHub, str], tmp_path: Path) -> None:
    state, url = hub
    dest = hf_cache_path(tmp_path, "org/model", "model.gguf")
    dest.parent.mkdir(parents=True)
    part_path(dest).write_bytes(state.data[:300_000])
    path = pull_hf("org/model", "model.gguf", tmp_path, base_url=url)
    assert state.ranges == ["bytes=300000-"]
    assert path.read_bytes() == state.data
    assert not part_path(dest).exists()


def test_pull_hf_retries_an_interrupted_body_from_where_it_stopped(
    hub: tuple[FakeHub, str], tmp_path: Path
) -> None:
    state, url = hub
    state.fail_after = 123_456
    path = pull_hf("org/model", "model.gguf", tmp_path, base_url=url)
    assert state.ranges == [None, "bytes=123456-"]
    assert path.read_bytes() == state.data


def test_pull_hf_completes_when_the_part_file_is_already_whole(
    hub: tuple[FakeHub, str], tmp_path: Path
) -> None:
    state, url = hub
    dest = hf_cache_path(tmp_path, "org/model", "model.gguf")
    dest.parent.mkdir(parents=True)
    part_path(dest).write_bytes(state.data)
    assert pull_hf("org/model", "model.gguf", tmp_path, base_url=url).read_bytes() == state.data
    assert state.ranges == [f"bytes={len(state.data)}-"]


def test_pull_hf_rejects_a_sha256_mismatch(hub: tuple[FakeHub, str], tmp_path: Path) -> None:
    state, url = hub
    state.etag = "0" * 64
    with pytest.raises(ModelFetchError, match="sha256"):
        pull_hf("org/model", "model.gguf", tmp_path, base_url=url)
    dest = hf_cache_path(tmp_path, "org/model", "model.gguf")
    assert not dest.exists()
    assert not part_path(dest).exists()  # a corrupt partial is not resumed next time


def test_pull_hf_http_error(hub: tuple[FakeHub, str], tmp_path: Path) -> None:
    _, url = hub
    with pytest.raises(ModelFetchError, match="404"):
        pull_hf("org/other", "model.gguf", tmp_path, base_url=url)


# ---------------------------------------------------------------- CLI


def test_cli_help_on_every_command() -> None:
    runner = CliRunner()
    for args in ([], ["pull"], ["tiny"], ["list"]):
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage" in result.output


def test_cli_tiny_pull_and_list(tmp_path: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["tiny", str(tmp_path / "x.gguf")])
    assert out.exit_code == 0
    assert (tmp_path / "x.gguf").is_file()
    cache = tmp_path / "cache"
    pulled = runner.invoke(app, ["pull", "tiny", "--cache-dir", str(cache)])
    assert pulled.exit_code == 0
    assert pulled.stdout.strip() == str(cache / "tiny-llama.gguf")
    listed = runner.invoke(app, ["list", "--cache-dir", str(cache)])
    assert "tiny-llama.gguf" in listed.stdout
    bad = runner.invoke(app, ["pull", "nonsense", "--cache-dir", str(cache)])
    assert bad.exit_code == 1
