"""False-hit rate of the semantic cache on tests/data/cache_pairs.jsonl, through Redis 8 vector sets.

The set: paraphrases that should hit ("same": true) and near-misses that must not (reversed meaning,
different numbers or names). Each pair gets its own tenant: one cached prompt, one lookup.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from redis.asyncio import Redis

from cloud.cache import ResponseCache
from cloud.embed import MiniLM
from cloud.settings import CacheSettings
from ebrain.inference.ports import Completion
from schemas import InferenceRequest

pytestmark = [pytest.mark.integration]

PAIRS = Path(__file__).parent / "data" / "cache_pairs.jsonl"
MAX_FALSE_HIT_RATE = 0.05
MIN_PARAPHRASE_HIT_RATE = 0.6


async def test_false_hit_rate_is_bounded_on_the_pair_set(redis8_url: str) -> None:
    pairs = [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()]
    assert sum(p["same"] for p in pairs) >= 30
    assert sum(not p["same"] for p in pairs) >= 40
    redis = Redis.from_url(redis8_url)
    cache = ResponseCache(redis, MiniLM(), prefix=f"quality:{uuid.uuid4().hex[:8]}",
                          threshold=CacheSettings().threshold)
    await cache.start()
    assert cache.semantic
    false_hits, hits = [], []
    for i, pair in enumerate(pairs):
        tenant = f"t{i}"
        answer = Completion(text="cached", prompt_tokens=1, completion_tokens=1, mean_logprob=None,
                            finish_reason="stop", latency_ms=1.0, model_id="m", model_version="1")
        await cache.store(tenant, "1", InferenceRequest(request_id="a", prompt=pair["cached"]), answer)
        hit = await cache.lookup(tenant, "1", InferenceRequest(request_id="b", prompt=pair["query"]))
        if hit is not None and pair["same"]:
            hits.append(pair)
        elif hit is not None:
            false_hits.append(pair)
    await redis.aclose()
    near = sum(not p["same"] for p in pairs)
    same = len(pairs) - near
    print(f"false-hit rate {len(false_hits)}/{near}, paraphrase hit rate {len(hits)}/{same}")
    assert len(false_hits) / near <= MAX_FALSE_HIT_RATE, false_hits
    assert len(hits) / same >= MIN_PARAPHRASE_HIT_RATE
