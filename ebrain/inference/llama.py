"""The llama.cpp adapter of the `Engine` port (llama-cpp-python 0.3.36).

Generation uses `Llama.generate` with the prompt rendered by the GGUF's own chat template (the same
`Jinja2ChatFormatter` that `create_chat_completion` uses), not `create_chat_completion` itself: in 0.3.36 its
`logprobs` needs `logits_all=True`, which keeps an n_ctx x n_vocab float32 array (400 MB for SmolLM2 at
n_ctx 2048, 2 GB for Gemma 3's 262k vocabulary), computes the LM head for every prompt position and sorts
the whole vocabulary in Python for every token. Here the log-probability of each sampled token is read from
the context's last logits right after sampling, which costs one log-sum-exp per token.

`mean_logprob` is the mean natural-log probability under the model's raw distribution (temperature 1, no
top-k/top-p) of every sampled token, including the end-of-turn token when generation stopped on one.

Prompts that do not fit the context raise `PromptTooLongError` (invalid input: clipping would silently
drop the system prompt or the question). A prompt that fits but leaves less room than `max_tokens`
generates until the context is full and reports finish_reason "length".
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

import numpy as np
from prometheus_client import Counter

from ebrain.inference.ports import Completion, EngineError, EngineOverloaded, EngineUnavailable
from schemas import InferenceRequest

if TYPE_CHECKING:
    from llama_cpp import Llama

log = logging.getLogger(__name__)

REJECTED = Counter(
    "ebrain_llama_engine_rejected_total", "Requests refused because the engine queue was full.", ["model_id"]
)

_TOP_K, _TOP_P, _MIN_P = 40, 0.95, 0.05  # llama-cpp-python's create_completion defaults
_STREAM_QUEUE = 64  # text pieces buffered between the inference thread and a slow stream consumer


class PromptTooLongError(EngineError, ValueError):
    """Invalid input for this engine: the rendered prompt does not fit its context window."""


class _CancelledError(Exception):
    """Raised inside the worker thread when the caller went away."""


@dataclass(slots=True, eq=False)  # hashed by identity: jobs live in a set
class _Job:
    request: InferenceRequest
    cancel: threading.Event = field(default_factory=threading.Event)
    on_piece: Callable[[str], None] | None = None


class LlamaCppEngine:
    """A GGUF model behind the `Engine` port: one llama.cpp context, requests run one at a time.

    At most `max_queue` requests wait behind the running one; beyond that `complete` and `stream` raise
    EngineOverloaded at once (counted in `rejected` and `ebrain_llama_engine_rejected_total`).
    """

    def __init__(
        self,
        model_path: Path | str,
        *,
        model_id: str | None = None,
        model_version: str = "local",
        n_threads: int | None = None,
        n_ctx: int = 2048,
        n_batch: int = 512,
        use_mmap: bool = True,
        max_queue: int = 8,
        seed: int = 0,
        use_extra_bufts: bool | None = None,
        chat_template: str | None = None,
    ) -> None:
        """Load the model (blocking; see `load` for the async form). Raises EngineUnavailable on failure.

        `use_extra_bufts` (llama.cpp's weight repacking buffers) defaults to on, except on builds with the
        AMX kernels, which crash (see `_has_amx`). `chat_template` (Jinja, as in tokenizer_config.json)
        replaces the GGUF's own; without either, the system and user text are sent as plain text.
        """
        if max_queue < 0:
            raise ValueError("max_queue must be >= 0")
        self.model_path = Path(model_path)
        self._model_id = model_id or self.model_path.stem
        self._model_version = model_version
        self._max_queue = max_queue
        # Every llama.cpp call (load, generate, free) runs on this one thread. Besides serialising access, it
        # keeps llama.cpp's OpenMP thread team on one caller: calling from a second thread starts a second
        # team whose workers fight the first one's spinning workers, measured 10x slower on 2 cores.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llama-{self._model_id}")
        self._lock = threading.Lock()  # llama.cpp contexts are not thread safe; belt and braces
        try:
            self._llm: Llama | None = self._executor.submit(
                _load, self.model_path, n_threads=n_threads or os.cpu_count() or 1, n_ctx=n_ctx,
                n_batch=n_batch, use_mmap=use_mmap, seed=seed, use_extra_bufts=use_extra_bufts,
            ).result()
        except BaseException:
            self._executor.shutdown(wait=False)
            raise
        self._formatter = _chat_formatter(self._llm, chat_template)
        self._admitted = 0  # running + waiting; touched only on the event loop thread
        self._jobs: set[_Job] = set()
        self._closed = False
        self.rejected = 0

    @classmethod
    async def load(cls, model_path: Path | str, **kwargs: Any) -> Self:
        """Load in a worker thread so the event loop keeps running; same arguments as the constructor."""
        return await asyncio.to_thread(cls, model_path, **kwargs)

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def model_version(self) -> str:
        return self._model_version

    @property
    def queue_depth(self) -> int:
        """Requests admitted and not finished (the running one included)."""
        return self._admitted

    @property
    def n_ctx(self) -> int:
        return self._require_llm().n_ctx()

    def prompt_tokens(self, request: InferenceRequest) -> list[int]:
        """The tokens `request` is rendered to (chat template applied); tokenizing needs no context."""
        return self._prompt_tokens(self._require_llm(), request)

    async def complete(
        self, request: InferenceRequest, *, on_piece: Callable[[str], None] | None = None
    ) -> Completion:
        """Answer one request. Raises EngineOverloaded, EngineUnavailable or PromptTooLongError.

        `on_piece`, when given, is called on the event loop with each piece of text as it is generated
        (streaming without giving up the Completion's counts and log-probability).
        """
        job = _Job(request)
        if on_piece is not None:
            loop = asyncio.get_running_loop()

            def hand_over(piece: str) -> None:
                loop.call_soon_threadsafe(on_piece, piece)  # never blocks the inference thread

            job.on_piece = hand_over
        return await self._submit(job)

    async def stream(self, request: InferenceRequest) -> AsyncIterator[str]:
        """Yield the answer's text piece by piece as it is generated (same errors as `complete`).

        The inference thread blocks when the consumer falls `_STREAM_QUEUE` pieces behind; closing the
        iterator early stops generation at the next token.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=_STREAM_QUEUE)
        job = _Job(request)

        def push(piece: str) -> None:
            if job.cancel.is_set():
                raise _CancelledError
            asyncio.run_coroutine_threadsafe(queue.put(piece), loop).result()

        job.on_piece = push
        task = asyncio.ensure_future(self._submit(job))
        try:
            while (piece := await _next_piece(queue, task)) is not None:
                yield piece
            await task  # re-raise the engine's error, if any
        finally:
            job.cancel.set()
            while not queue.empty():  # unblock the thread if it waits on a full queue
                queue.get_nowait()
            await asyncio.wait([task])
            if not task.cancelled():
                task.exception()  # retrieved: the consumer left, so the error has no one to reach

    async def aclose(self) -> None:
        """Stop admitting, cancel running and waiting jobs, then free the model. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for job in list(self._jobs):
            job.cancel.set()
        await asyncio.get_running_loop().run_in_executor(self._executor, self._free)
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _submit(self, job: _Job) -> Completion:
        if self._closed:
            raise EngineUnavailable(f"engine for {self.model_path} is closed")
        if self._admitted > self._max_queue:
            self.rejected += 1
            REJECTED.labels(self._model_id).inc()
            raise EngineOverloaded(f"{self._model_id}: {self._max_queue} requests already waiting")
        self._admitted += 1
        self._jobs.add(job)
        future = asyncio.get_running_loop().run_in_executor(self._executor, self._run, job)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # Threads cannot be cancelled: ask it to stop at the next token and wait, so nothing outlives us.
            job.cancel.set()
            await asyncio.wait([future])
            if not future.cancelled():
                future.exception()  # retrieved: the caller is gone, its error has no one to reach
            raise
        finally:
            self._admitted -= 1
            self._jobs.discard(job)

    def _free(self) -> None:
        with self._lock:
            if self._llm is not None:
                self._llm.close()
                self._llm = None

    def _require_llm(self) -> Llama:
        if self._llm is None:
            raise EngineUnavailable(f"engine for {self.model_path} is closed")
        return self._llm

    def _run(self, job: _Job) -> Completion:
        """Worker thread: every failure leaves as an EngineError."""
        with self._lock:
            try:
                return self._answer(job)
            except EngineError:
                raise
            except _CancelledError as exc:
                raise EngineUnavailable(f"request {job.request.request_id} cancelled") from exc
            except Exception as exc:
                msg = f"{self._model_id} failed on {job.request.request_id}: {exc}"
                raise EngineUnavailable(msg) from exc

    def _answer(self, job: _Job) -> Completion:
        """Render, generate, measure (called with the lock held)."""
        start = time.perf_counter()
        if job.cancel.is_set():
            raise _CancelledError
        llm = self._require_llm()
        prompt = self._prompt_tokens(llm, job.request)
        room = llm.n_ctx() - len(prompt)
        if room < 1:
            raise PromptTooLongError(f"prompt is {len(prompt)} tokens; context holds {llm.n_ctx()}")
        gen = _generate(llm, prompt, job, max_tokens=min(job.request.max_tokens, room))
        return Completion(
            text=gen.text,
            prompt_tokens=len(prompt),
            completion_tokens=gen.n_tokens,
            mean_logprob=gen.mean_logprob,
            finish_reason=gen.finish_reason,
            latency_ms=(time.perf_counter() - start) * 1000.0,
            model_id=self._model_id,
            model_version=self._model_version,
        )

    def _prompt_tokens(self, llm: Llama, request: InferenceRequest) -> list[int]:
        messages = [{"role": "user", "content": request.prompt}]
        if request.system:
            messages.insert(0, {"role": "system", "content": request.system})
        if self._formatter is None:  # no chat template in the GGUF: plain text after BOS
            text = f"{request.system}\n\n{request.prompt}" if request.system else request.prompt
            return llm.tokenize(text.encode(), add_bos=True, special=False)
        rendered = self._formatter(messages=messages).prompt
        # The template writes BOS itself, as in create_chat_completion.
        return llm.tokenize(rendered.encode(), add_bos=False, special=True)


@dataclass(slots=True)
class _Generated:
    text: str
    n_tokens: int
    mean_logprob: float | None
    finish_reason: Literal["stop", "length"]


def _generate(llm: Llama, prompt: list[int], job: _Job, *, max_tokens: int) -> _Generated:
    import llama_cpp  # noqa: PLC0415

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    n_vocab = llm.n_vocab()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    temp = job.request.temperature
    pieces: list[str] = []
    logprobs: list[float] = []
    n_tokens = 0
    finish: Literal["stop", "length"] = "length"
    scratch = np.empty(n_vocab, dtype=np.float32)  # reused per token: no 1-2 MB allocation per step
    tokens = llm.generate(prompt, temp=temp, top_k=_TOP_K, top_p=_TOP_P, min_p=_MIN_P, repeat_penalty=1.0)
    try:
        for token in tokens:
            # The context still holds the logits this token was sampled from: the next eval comes after.
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
            logprobs.append(_log_softmax_at(logits, token, scratch))
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                finish = "stop"
                break
            n_tokens += 1
            piece = decoder.decode(llm.detokenize([token]))
            _emit(job, pieces, piece)
            if n_tokens >= max_tokens:
                break
    finally:
        tokens.close()
    _emit(job, pieces, decoder.decode(b"", final=True))
    mean = float(np.mean(logprobs)) if logprobs else None
    return _Generated("".join(pieces), n_tokens, mean, finish)


def _emit(job: _Job, pieces: list[str], piece: str) -> None:
    if job.cancel.is_set():
        raise _CancelledError
    if piece:
        pieces.append(piece)
        if job.on_piece is not None:
            job.on_piece(piece)


def _log_softmax_at(logits: np.ndarray, token: int, scratch: np.ndarray) -> float:
    """log p(token) = logit - max - log(sum(exp(logits - max))): exp in float32 in place, sum in float64.

    ~0.3 ms per token for Gemma 3's 262k vocabulary (0.47 ms with a fresh float64 array each time).
    """
    peak = logits.max()
    np.subtract(logits, peak, out=scratch)
    np.exp(scratch, out=scratch)
    return float(logits[token]) - float(peak) - float(np.log(scratch.sum(dtype=np.float64)))


async def _next_piece(queue: asyncio.Queue[str], task: asyncio.Future[Completion]) -> str | None:
    """The next piece, or None once the job has finished and everything it produced was read.

    The thread's puts complete before it returns, so a finished task means the queue holds all its pieces.
    """
    while queue.empty() and not task.done():
        getter = asyncio.ensure_future(queue.get())
        waiting: set[asyncio.Future[Any]] = {getter, task}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            return getter.result()
        getter.cancel()
    return None if queue.empty() else queue.get_nowait()


_PARAMS_PATCH = threading.Lock()


def load_llama(path: Path, *, use_extra_bufts: bool | None = None, **kwargs: Any) -> Llama:
    """A plain `llama_cpp.Llama` loaded the way the engine loads it (weight repacking off on AMX builds).

    Benchmarks use it for their raw baseline: a plain `Llama()` crashes on AMX builds with quantized models.
    """
    return _load(path, use_extra_bufts=use_extra_bufts, **kwargs)


def _load(path: Path, *, use_extra_bufts: bool | None, **kwargs: Any) -> Llama:
    if not path.is_file():
        raise EngineUnavailable(f"model file not found: {path}")
    try:
        import llama_cpp  # noqa: PLC0415

        if use_extra_bufts is None:
            use_extra_bufts = not _has_amx(llama_cpp)
        started = time.perf_counter()
        with _model_params(llama_cpp, use_extra_bufts=use_extra_bufts):
            llm = llama_cpp.Llama(model_path=str(path), verbose=False, **kwargs)
    except Exception as exc:
        raise EngineUnavailable(f"cannot load model {path}: {exc}") from exc
    load_ms = round((time.perf_counter() - started) * 1e3)
    log.info("model loaded", extra={"path": str(path), "load_ms": load_ms, "extra_bufts": use_extra_bufts})
    return llm


def _has_amx(llama_cpp: Any) -> bool:
    """True when llama.cpp was built with its AMX kernels (a native build on a Sapphire Rapids+ CPU).

    Those kernels crash with a general protection fault on `ldtilecfg` (invalid tile config on the stack,
    and XFD permission requested on the main thread only): ggml-org/llama.cpp#20824, fix in PR #26954.
    They are reached only through llama.cpp's "extra buffer types", so an AMX build loads with those off.
    """
    return b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()


@contextlib.contextmanager
def amx_safe_loading() -> Iterator[None]:
    """For code that builds `llama_cpp.Llama` itself (llama-cpp-python's server): weight repacking is off while
    inside, on AMX builds only, exactly as `load_llama` does."""
    import llama_cpp  # noqa: PLC0415

    with _model_params(llama_cpp, use_extra_bufts=not _has_amx(llama_cpp)):
        yield


@contextlib.contextmanager
def _model_params(llama_cpp: Any, *, use_extra_bufts: bool) -> Iterator[None]:
    """Let `Llama()` load with `use_extra_bufts` set: 0.3.36 builds its model params without exposing it."""
    if use_extra_bufts:  # llama.cpp's default
        yield
        return
    low = llama_cpp.llama_cpp
    with _PARAMS_PATCH:
        default = low.llama_model_default_params

        def params() -> Any:
            out = default()
            out.use_extra_bufts = False
            return out

        low.llama_model_default_params = params
        try:
            yield
        finally:
            low.llama_model_default_params = default


def _chat_formatter(llm: Llama, template: str | None) -> Any:
    """The GGUF's chat template as llama-cpp-python renders it, or None when the file has none."""
    import llama_cpp  # noqa: PLC0415
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter  # noqa: PLC0415

    template = template or llm.metadata.get("tokenizer.chat_template")
    if not template:
        return None
    vocab = llama_cpp.llama_model_get_vocab(llm.model)

    def text(token: int) -> str:
        return llama_cpp.llama_vocab_get_text(vocab, token).decode() if token != -1 else ""

    # The same bos/eos strings Llama.__init__ gives the formatter that create_chat_completion uses.
    return Jinja2ChatFormatter(
        template=template, eos_token=text(llm.token_eos()), bos_token=text(llm.token_bos())
    )
