"""Run llama.cpp's `convert_hf_to_gguf.py` with the tokenizer copied from the parent GGUF (a child process).

Usage: python -m trainers.adapters.convert_main TOOL_DIR PARENT_GGUF -- <converter arguments>

Fine-tuning never changes the tokenizer, so the parent's `tokenizer.*` metadata (vocabulary, merges, scores,
token types, special ids, chat template) is copied byte for byte instead of being rebuilt from the HF
tokenizer files. Rebuilding would go GGUF -> transformers -> GGUF and depends on the converter recognising
the pre-tokenizer by a hash of its output, which a tokenizer reconstructed by transformers need not match.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def copy_tokenizer(writer: Any, parent: Path) -> int:
    """Add every `tokenizer.*` key of `parent` to `writer`; returns how many were copied."""
    import gguf  # noqa: PLC0415  (the converter's own gguf-py, first on sys.path by now)

    reader = gguf.GGUFReader(parent)
    copied = 0
    for field in reader.fields.values():
        if not field.name.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub)
        copied += 1
    return copied


def main(argv: list[str]) -> None:
    """Patch the converter's model class lookup so the class it returns copies the parent's tokenizer."""
    tool_dir, parent, rest = Path(argv[0]), Path(argv[1]), argv[3:]
    sys.path.insert(0, str(tool_dir))
    import convert_hf_to_gguf as converter  # noqa: PLC0415

    lookup = converter.get_model_class

    def get_model_class(*args: Any, **kwargs: Any) -> Any:
        base = lookup(*args, **kwargs)

        def set_vocab(self: Any) -> None:
            if copy_tokenizer(self.gguf_writer, parent) == 0:
                raise SystemExit(f"{parent} has no tokenizer metadata to copy")

        return type(base.__name__, (base,), {"set_vocab": set_vocab, "model_arch": base.model_arch})

    converter.get_model_class = get_model_class
    sys.argv = ["convert_hf_to_gguf.py", *rest]
    converter.main()


if __name__ == "__main__":
    main(sys.argv[1:])
