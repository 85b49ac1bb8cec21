"""Trainers: periodic LoRA SFT and DPO on what the fleet saw, an evaluation gate, GGUF export and rollout.

Empty until the fine-tuning issue lands; the package exists so the layout (edge, gateway, cloud, trainers,
schemas) is the one every part of the project and its packaging refer to.
"""
