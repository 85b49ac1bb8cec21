"""Whether an export quantization keeps a fine-tune: the round's base is loaded dequantized from its own grid.

A LoRA round changes most weights by less than one step of a 4-bit grid. Quantizing the merged model back to
the base's grid (or a coarser one) rounds those changes away: the candidate answers like its parent. Measured on
the flywheel (SmolLM2-135M Q4_1 base, 40 SFT steps): the same trained model escalated 18 of 20 held-out prompts
exported as Q4_1 and 0 of 20 as Q8_0 or F16. The check speaks for grids below 8 bits that are no finer than the
base's; Q8_0 over a Q8_0 base (a second round) was not measured. Pure: file-type numbers in, a warning or None out.
"""

from __future__ import annotations

# Bits per weight of llama.cpp's file types (llama_ftype values), by name and number.
BITS: dict[str, float] = {"f32": 32.0, "f16": 16.0, "bf16": 16.0, "q8_0": 8.5, "q5_1": 6.0, "q5_0": 5.5,
                          "q4_1": 5.0, "q4_k_m": 4.85, "q4_0": 4.5}
FTYPE_NAMES: dict[int, str] = {0: "f32", 1: "f16", 2: "q4_0", 3: "q4_1", 7: "q8_0", 8: "q5_0", 9: "q5_1",
                               15: "q4_k_m", 32: "bf16"}


def erases_finetune(target: str, base_ftype: int | None) -> str | None:
    """A warning when quantizing to `target` would round a fine-tune of a `base_ftype` model away, else None.

    Unknown base types (None, or a number not in the table) give None: the check only speaks when it knows.
    """
    base = FTYPE_NAMES.get(base_ftype) if base_ftype is not None else None
    if base is None or target not in BITS or BITS[base] >= 16.0:
        return None  # a float base: any quantization starts from the trained weights themselves
    if BITS[target] > BITS[base] or BITS[target] >= 8.0:
        return None  # an 8-bit step is 1/16 of a 4-bit one: Q8_0 kept the measured fine-tune
    return (f"export quantization {target} is no finer than the base's {base}: the base was loaded from that "
            f"grid, and LoRA changes smaller than one of its steps round back to the base's weights "
            f"(use q8_0 or f16 to keep the fine-tune)")
