"""The trainers' adapters: dataset reading, peft/trl training, evaluation, GGUF export, registry, rollout."""
