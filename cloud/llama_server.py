"""`python -m cloud.llama_server ...`: llama-cpp-python's OpenAI-compatible server, safe on AMX builds.

Same arguments as `python -m llama_cpp.server` (--model, --host, --port, --n_ctx, --n_threads, ...).
llama.cpp builds with AMX kernels crash on quantized models (ggml-org/llama.cpp#20824) unless weight
repacking ("extra buffer types") is off; llama-cpp-python 0.3.36 does not expose that switch, so the server runs
inside `ebrain.inference.llama.amx_safe_loading`, the same patch the edge engine loads its models with.
"""

from __future__ import annotations

import sys

from ebrain.inference.llama import amx_safe_loading


def main() -> None:
    """Run llama-cpp-python's server main with this process's arguments, its model loads AMX-safe."""
    from llama_cpp.server.__main__ import main as serve  # noqa: PLC0415 - needs the [server] extra

    with amx_safe_loading():
        sys.exit(serve())  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
