"""Convert a GGUF (SmolLM2) to Hugging Face safetensors for vLLM, which cannot load GGUF on CPU.

Run with the vLLM venv's python (it has torch and transformers): `python convert.py GGUF OUT_DIR`.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(gguf: str, out: str) -> None:
    """Dequantize `gguf` through transformers' GGUF loader and save bf16 safetensors plus the tokenizer."""
    import torch  # noqa: PLC0415 - only in the vLLM venv
    from safetensors.torch import save_file  # noqa: PLC0415
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415

    path = Path(gguf)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, torch_dtype=torch.bfloat16)
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    target = Path(out)
    tmp = target.with_name(target.name + ".tmp")
    # The weights are dequantized already, but the config still says GGUF and save_pretrained refuses.
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    tmp.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(tmp)
    if model.generation_config is not None:
        model.generation_config.save_pretrained(tmp)
    # Tied embeddings: keep model.embed_tokens.weight and drop lm_head.weight. (safetensors' save_model keeps
    # the other name of the shared pair, and vLLM, which skips lm_head for tied models, then serves an
    # all-zero embedding: uniform logits, gibberish.)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    state = {k: v.contiguous() for k, v in model.state_dict().items() if not (tied and k == "lm_head.weight")}
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)  # complete or absent: a killed conversion is redone, never half-used


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
