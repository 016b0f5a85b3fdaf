"""Benchmark: GET /v1/memory/recall latency through the Redis cache vs straight to the backend.

Run with `make bench` (the stack must be up, memory schema migrated). In one run, against the
same Postgres backend and the same seeded memories (a fresh tenant): two gateway processes,
one with the cache off (SOMA_RECALL_CACHE_TTL_S=0) and one with it on. Each answers the same
queries one after another over a kept-alive connection, timed at the client:

- uncached: the cache-off gateway (the backend answers every time);
- miss: the cache-on gateway right after the tenant's generation was bumped (the lookup, the
  backend, and storing the answer);
- hit: the cache-on gateway, answer in Redis.

Prints p50/p99 of each and the uncached/hit ratio.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from gateway.auth import issue_token
from processors.memory import MemoryWrite
from processors.memory_keys import MemoryScope
from soma.settings import Settings
from state.memory.factory import memory_backend
from state.recall_cache import bump_generations, redis_client
from tests.support.flows import isolated_settings
from tests.support.processes import running_gateway

MEMORIES = int(os.environ.get("BENCH_RECALL_MEMORIES", "5000"))
REQUESTS = int(os.environ.get("BENCH_RECALL_REQUESTS", "400"))
TOP_K = 10
WORDS = [
    "heron",
    "otter",
    "kingfisher",
    "lighthouse",
    "harbour",
    "tide",
    "anchor",
    "sail",
    "compass",
    "lantern",
    "rope",
    "gull",
    "reef",
    "storm",
    "keeper",
    "beacon",
    "island",
    "cliff",
    "pebble",
    "driftwood",
]
QUERIES = [f"{a} {b}" for a, b in zip(WORDS, WORDS[5:] + WORDS[:5], strict=True)]
JWT = {"bench": "bench-recall-cache-" + "k" * 32}


async def seed(settings: Settings, scope: MemoryScope) -> None:
    """MEMORIES memories of 12 words each, in batches of 500."""
    rng = random.Random(7)
    backend = memory_backend(settings)
    try:
        for start in range(0, MEMORIES, 500):
            writes = [
                MemoryWrite.for_event(
                    scope,
                    f"bench-{i}",
                    {"text": " ".join(rng.choices(WORDS, k=12)) + f" note {i}"},
                    session_id=f"s{i % 50}",
                )
                for i in range(start, min(start + 500, MEMORIES))
            ]
            await backend.remember_batch(writes)
    finally:
        await backend.aclose()


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(client: httpx.Client, query: str, expect: str) -> float:
    started = time.perf_counter()
    response = client.get("/v1/memory/recall", params={"query": query, "top_k": TOP_K})
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    assert response.headers["X-Recall-Cache"] == expect, response.headers
    assert len(response.json()["results"]) == TOP_K
    return elapsed * 1000


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = isolated_settings(stack_dir=Path(tmp), jwt_keys=JWT, jwt_active_kid="bench")
        tenant = f"bench{uuid.uuid4().hex[:8]}"
        scope = MemoryScope(tenant, settings.namespace)
        started = time.monotonic()
        asyncio.run(seed(settings, scope))
        print(f"seeded {MEMORIES} memories in {time.monotonic() - started:.1f} s")
        env = {
            "SOMA_TOPIC_PREFIX": settings.topic_prefix,
            "SOMA_JWT_KEYS": json.dumps(JWT),
            "SOMA_JWT_ACTIVE_KID": "bench",
        }
        headers = {"Authorization": f"Bearer {issue_token(settings, tenant)}"}
        samples: dict[str, list[float]] = {"uncached": [], "miss": [], "hit": []}
        loop = asyncio.new_event_loop()
        redis = redis_client(settings)
        with (
            running_gateway({**env, "SOMA_RECALL_CACHE_TTL_S": "0"}, Path(tmp) / "off.log") as off,
            running_gateway(env, Path(tmp) / "on.log") as on,
            httpx.Client(base_url=off, headers=headers, timeout=30) as uncached,
            httpx.Client(base_url=on, headers=headers, timeout=30) as cached,
        ):
            for query in QUERIES:  # warm both processes' pools and the database's pages
                timed(uncached, query, "off")
            for i in range(REQUESTS):
                query = QUERIES[i % len(QUERIES)]
                samples["uncached"].append(timed(uncached, query, "off"))
                loop.run_until_complete(bump_generations(redis, {(tenant, settings.namespace)}))
                samples["miss"].append(timed(cached, query, "miss"))
                samples["hit"].append(timed(cached, query, "hit"))
        loop.run_until_complete(redis.aclose())
        loop.close()
    print(f"recall of top {TOP_K} among {MEMORIES} memories, {REQUESTS} requests each (ms):")
    for name, values in samples.items():
        print(
            f"  {name:9} p50 {percentile(values, 0.5):7.2f}  p99 {percentile(values, 0.99):7.2f}"
            f"  mean {statistics.fmean(values):7.2f}"
        )
    p50 = percentile(samples["uncached"], 0.5) / percentile(samples["hit"], 0.5)
    p99 = percentile(samples["uncached"], 0.99) / percentile(samples["hit"], 0.99)
    print(f"uncached/hit: p50 {p50:.1f}x, p99 {p99:.1f}x")


if __name__ == "__main__":
    main()
