"""`python -m cloud.llama_server ...`: llama-cpp-python's OpenAI-compatible server, safe on AMX builds.

Same arguments as `python -m llama_cpp.server` (--model, --host, --port, --n_ctx, --n_threads, ...).
llama.cpp builds with AMX kernels crash on quantized models (ggml-org/llama.cpp#20824) unless weight
repacking ("extra buffer types") is off; llama-cpp-python 0.3.36 does not expose that switch, so the
default model params are patched before the server loads its model, as `ebrain.inference.llama` does.
"""

from __future__ import annotations

import sys
from typing import Any


def disable_repacking_on_amx() -> bool:
    """Patch llama.cpp's default model params to `use_extra_bufts = False` on AMX builds; True if patched."""
    import llama_cpp  # noqa: PLC0415

    if b"AMX_INT8 = 1" not in llama_cpp.llama_print_system_info():
        return False
    low = llama_cpp.llama_cpp
    default = low.llama_model_default_params

    def params() -> Any:
        out = default()
        out.use_extra_bufts = False
        return out

    low.llama_model_default_params = params
    return True


def main() -> None:
    """Patch if needed, then run llama-cpp-python's server main with this process's arguments."""
    disable_repacking_on_amx()
    from llama_cpp.server.__main__ import main as serve  # noqa: PLC0415 - needs the [server] extra

    sys.exit(serve())  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
