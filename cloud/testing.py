"""Test doubles for the cloud: a tiny OpenAI-compatible HTTP server whose behaviour a test switches.

`StubServer.mode` picks the answer to every chat completion: "ok" (echo the prompt, also as SSE when
streamed), "503", "429", "500", "400" or "hang" (accept, then never answer). `/metrics` serves
`metrics_text`. Real sockets, so the adapters under test run exactly as against vLLM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Self

import httpx

from cloud.backends.ports import Backend, EngineOverloaded, Tier
from ebrain.inference.ports import Completion
from ebrain.lifecycle import Lifecycle
from schemas import InferenceRequest


class StubServer(Lifecycle):
    """`async with StubServer() as s:` listens on 127.0.0.1:`s.port`; `s.url` is the base URL."""

    def __init__(self, *, mode: str = "ok", model: str = "stub") -> None:
        self.mode = mode
        self.model = model
        self.metrics_text = ""
        self.requests = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._hung: set[asyncio.StreamWriter] = set()
        self._connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen on a free port (idempotent)."""
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close hung connections and the listener (idempotent)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        # Close every connection so its handler sees EOF and returns (no task is left to be cancelled).
        for writer in self._connections.values():
            writer.close()
        await asyncio.gather(*self._connections, return_exceptions=True)
        self._connections.clear()
        self._hung.clear()
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                length = next((int(v) for k, _, v in (ln.partition(": ") for ln in lines[1:])
                               if k.lower() == "content-length"), 0)
                body = json.loads(await reader.readexactly(length)) if length else {}
                if not await self._answer(method, path, body, reader, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self._connections.pop(task, None)
            with contextlib.suppress(Exception):
                writer.close()

    async def _answer(self, method: str, path: str, body: dict[str, Any], reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> bool:
        if path == "/metrics":
            _respond(writer, 200, self.metrics_text.encode(), "text/plain")
        elif path == "/v1/chat/completions" and method == "POST":
            self.requests += 1
            mode = self.mode
            if mode == "hang":
                self._hung.add(writer)
                while await reader.read(65536):  # until the client gives up and closes the connection
                    pass
                self._hung.discard(writer)
                return False
            if mode != "ok":
                _respond(writer, int(mode), json.dumps({"error": f"stub {mode}"}).encode(), "application/json")
            elif body.get("stream"):
                _stream(writer, self._text(body))
            else:
                _respond(writer, 200, json.dumps(self._completion(body)).encode(), "application/json")
        else:
            _respond(writer, 404, b"{}", "application/json")
        await writer.drain()
        return True

    def _text(self, body: dict[str, Any]) -> str:
        return f"echo: {body['messages'][-1]['content']}"

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        text = self._text(body)
        return {"id": "stub", "object": "chat.completion", "model": self.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "stop",
                             "logprobs": {"content": [{"token": "x", "logprob": -0.1}]}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": len(text.split())}}


def _respond(writer: asyncio.StreamWriter, status: int, payload: bytes, kind: str) -> None:
    writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
                 + payload)


def _stream(writer: asyncio.StreamWriter, text: str) -> None:
    events = b"".join(
        b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": piece + " "}}]}).encode() + b"\n\n"
        for piece in text.split())
    events += b"data: [DONE]\n\n"
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    writer.write(head + f"{len(events):x}\r\n".encode() + events + b"\r\n0\r\n\r\n")


@contextlib.contextmanager
def llama_server(model: Path, *, n_ctx: int = 512, n_threads: int = 1, ready_s: float = 60.0) -> Iterator[str]:
    """A real llama.cpp OpenAI server (`python -m cloud.llama_server`) on a free port; yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [sys.executable, "-m", "cloud.llama_server", "--model", str(model), "--host", "127.0.0.1",
            "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(n_threads), "--model_alias", "llama"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + ready_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited with {proc.returncode}")
            try:
                if httpx.get(f"{url}/v1/models", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > end:
                raise TimeoutError(f"llama.cpp server not ready after {ready_s}s")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Gate:
    """A Backend wrapper a test can close: closed, every call raises EngineOverloaded (a saturated replica)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.closed = False

    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def tier(self) -> Tier:
        return self.backend.tier

    @property
    def model_id(self) -> str:
        return self.backend.model_id

    @property
    def model_version(self) -> str:
        return self.backend.model_version

    async def complete(self, request: InferenceRequest, *, timeout_s: float) -> Completion:
        """The wrapped backend's answer, or EngineOverloaded while closed."""
        if self.closed:
            raise EngineOverloaded("gate closed (simulated saturation)")
        return await self.backend.complete(request, timeout_s=timeout_s)

    def stream(self, request: InferenceRequest, *, timeout_s: float) -> AsyncIterator[str]:
        """The wrapped backend's stream (the gate applies to completions only)."""
        return self.backend.stream(request, timeout_s=timeout_s)

    async def metrics(self) -> str | None:
        """The wrapped backend's metrics."""
        return await self.backend.metrics()

    async def aclose(self) -> None:
        """Close the wrapped backend."""
        await self.backend.aclose()
