"""The edge model in transformers: loaded from its GGUF (dequantized to float32), saved as a HF directory.

transformers reads llama-family GGUFs (weights, config and tokenizer, chat template included), so the base of a
training round is exactly the file the fleet runs, with no hub download.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(slots=True)
class HfModel:
    """A causal LM with its tokenizer, held together because every step needs both."""

    model: Any  # transformers.PreTrainedModel or a peft wrapper
    tokenizer: Any


def quiet_transformers() -> None:
    """Progress bars and advisory warnings off: the trainer logs its own structured events."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers  # noqa: PLC0415

    logs: Any = transformers.utils.logging  # untyped module functions
    logs.set_verbosity_error()
    logs.disable_progress_bar()
    import datasets  # noqa: PLC0415

    datasets.disable_progress_bars()  # trl's tokenizing passes
    # The GGUF loader's own tqdm bar ignores the switch above; the demo's dashboard shows the step instead.
    import transformers.modeling_gguf_pytorch_utils as gguf_loading  # noqa: PLC0415

    if hasattr(gguf_loading, "tqdm"):
        gguf_loading.tqdm = functools.partial(gguf_loading.tqdm, disable=True)
    # Deprecation notices about arguments trl passes for us (gradient_checkpointing): not the operator's to act on.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")


def load_gguf(path: Path, *, threads: int | None = None) -> HfModel:
    """Load `path` into transformers on the CPU in float32 (LoRA on CPU trains in float32)."""
    quiet_transformers()
    import torch  # noqa: PLC0415
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415

    if threads:
        torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    _plain(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    log.info("base loaded", extra={"path": str(path), "params": sum(p.numel() for p in model.parameters())})
    return HfModel(model, tokenizer)


def _plain(model: Any) -> None:
    """Forget the GGUF source: the weights are dequantized float32 already, but a model that still names
    the GGUF "quantization" is refused by the Trainer and saved with a config the converter does not expect."""
    model.hf_quantizer = None
    model.is_quantized = False
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config


def save_dir(hf: HfModel, out: Path) -> Path:
    """Write weights (safetensors), config and tokenizer to `out`: what the GGUF converter reads."""
    out.mkdir(parents=True, exist_ok=True)
    model = hf.model
    _plain(model)
    model.save_pretrained(out, safe_serialization=True)
    hf.tokenizer.save_pretrained(out)
    return out
