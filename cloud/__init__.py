"""The cloud worker: answers escalations and direct requests from Kafka with a large(r) model.

`core/` holds the pure decisions (replies, deadlines, dedup, routing and circuit breakers, cache keys and the
false-hit guard, rate-limit buckets). Adapters: `worker.py` (FastStream Kafka, retry topic), `responder.py`
(in-process engine), `backends/` (OpenAI-compatible HTTP: vLLM, llama.cpp server), `router.py`, `cache.py` +
`embed.py` (Redis 8 vector sets, MiniLM ONNX), `ratelimit.py` (Redis Lua), `idempotency.py` (reply store),
`pipeline.py` (cache -> limits -> router). `app.py` wires them from `CloudSettings` (`routed.py` for router mode).
"""
