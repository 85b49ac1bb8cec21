"""A tiny random-weight llama GGUF: what tests and CI load instead of a real model.

The output is gibberish, but the file exercises the real llama.cpp path (load, tokenize, chat template,
sample, log-probs) in milliseconds. Layout follows llama.cpp's gguf-py conventions for the llama arch.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

N_EMBD = 64
N_LAYER = 2
N_HEAD = 4
N_HEAD_KV = 2
N_FF = 128
N_CTX_TRAIN = 4096
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2

# Role-tagged turns; plain ASCII so every character maps onto the byte vocabulary.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def _vocab() -> tuple[list[bytes], list[int]]:
    """Three control tokens, one token per byte (SentencePiece byte fallback) and the space piece."""
    from gguf import TokenType  # noqa: PLC0415

    tokens = [b"<unk>", b"<s>", b"</s>"]
    types = [int(TokenType.UNKNOWN), int(TokenType.CONTROL), int(TokenType.CONTROL)]
    tokens += [f"<0x{b:02X}>".encode() for b in range(256)]
    types += [int(TokenType.BYTE)] * 256
    # SentencePiece writes spaces as U+2581; a piece for it keeps spaces one token and detokenized as " ".
    tokens.append("\u2581".encode())
    types.append(int(TokenType.NORMAL))
    return tokens, types


def _tensors(rng: np.random.Generator, n_vocab: int) -> dict[str, np.ndarray]:
    """Weights in numpy order (rows = output features), which gguf stores as ggml's reversed shape."""
    head_dim = N_EMBD // N_HEAD

    def mat(rows: int, cols: int, std: float = 0.1) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * std).astype(np.float32)

    ones = np.ones(N_EMBD, dtype=np.float32)
    # Large output weights make logits spread out; zero rows for the control tokens pin their logit at 0,
    # below the maximum of ~257 spread logits, so greedy decoding never stops early on a random EOS.
    output = mat(n_vocab, N_EMBD, std=0.5)
    output[[UNK_ID, BOS_ID, EOS_ID]] = 0.0
    tensors = {"token_embd.weight": mat(n_vocab, N_EMBD, std=1.0), "output_norm.weight": ones,
               "output.weight": output}
    for i in range(N_LAYER):
        tensors |= {
            f"blk.{i}.attn_norm.weight": ones,
            f"blk.{i}.attn_q.weight": mat(N_EMBD, N_EMBD),
            f"blk.{i}.attn_k.weight": mat(N_HEAD_KV * head_dim, N_EMBD),
            f"blk.{i}.attn_v.weight": mat(N_HEAD_KV * head_dim, N_EMBD),
            f"blk.{i}.attn_output.weight": mat(N_EMBD, N_EMBD),
            f"blk.{i}.ffn_norm.weight": ones,
            f"blk.{i}.ffn_gate.weight": mat(N_FF, N_EMBD),
            f"blk.{i}.ffn_up.weight": mat(N_FF, N_EMBD),
            f"blk.{i}.ffn_down.weight": mat(N_EMBD, N_FF),
        }
    return tensors


def write_tiny_llama(path: Path, *, seed: int = 0) -> Path:
    """Write a ~0.5 MB random llama GGUF to `path` and return it.

    Byte-identical for the same seed. Written to `<path>.part` then renamed, so readers never see half a file.
    """
    from gguf import GGUFWriter  # noqa: PLC0415

    tokens, types = _vocab()
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    writer = GGUFWriter(part, "llama")
    writer.add_name("ebrain-tiny-llama")
    writer.add_context_length(N_CTX_TRAIN)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(0)  # all F32
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * len(tokens))
    writer.add_token_types(types)
    writer.add_unk_token_id(UNK_ID)
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)
    writer.add_add_bos_token(False)  # the chat template writes BOS itself
    writer.add_chat_template(CHAT_TEMPLATE)
    for name, tensor in _tensors(np.random.default_rng(seed), len(tokens)).items():
        writer.add_tensor(name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(part, path)
    return path
