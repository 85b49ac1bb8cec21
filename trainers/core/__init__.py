"""The trainers' pure core: training pairs, the evaluation gate, the canary verdict, divergence checks.

Standard library only (no torch, transformers, aiokafka): every decision here is a plain function over
plain values, so it is tested fast and exhaustively and the adapters stay thin.
"""
