"""The Redis recall cache: answers stored by tenant/namespace generation, and the bump on write.

Readers (the gateway's `GET /v1/memory/recall`) use `RecallCache.recall`; writers (the
write-through flow, the outbox drain) call `bump_generations` — or keep a `GenerationBumper`,
which retries failed bumps — once the memory backend acknowledged a batch. Keys and encoding
are pure: `processors/recall_cache.py`. Redis failing never fails a recall or a write batch: the
recall is answered uncached, the bump is counted as failed (docs/gateway.md says what that
means for staleness).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from enum import StrEnum

from redis.asyncio import Redis
from redis.exceptions import RedisError

from processors.memory import RecallHit, RecallQuery
from processors.recall_cache import (
    ANSWER_TTL_S,
    MAX_ANSWER_BYTES,
    answer_key,
    decode_hits,
    encode_hits,
    generation_key,
    parse_generation,
)
from soma import metrics
from soma.settings import Settings

log = logging.getLogger(__name__)

Scope = tuple[str, str]  # (tenant, namespace)
Clock = Callable[[], float]
# Redis errors, a timeout, and a socket error redis-py did not wrap: all mean "no cache now".
_CACHE_ERRORS = (RedisError, TimeoutError, OSError)


class Outcome(StrEnum):
    HIT = "hit"  # answered from the cache
    MISS = "miss"  # asked the backend, stored the answer under the generation read before
    UNCACHED = "uncached"  # Redis failed now or within the cooldown: asked the backend only


def redis_client(settings: Settings) -> Redis:
    """One Redis client per process; every call bounded by the cache's own timeout too."""
    return Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=settings.health_timeout_s,
        socket_timeout=settings.health_timeout_s,
    )


class _Cooldown:
    """After a Redis failure, skip Redis for `seconds`: a blackholed Redis must not add its
    timeout to every request or batch. Logs once per outage."""

    def __init__(self, what: str, seconds: float, clock: Clock) -> None:
        self._what, self._seconds, self._clock = what, seconds, clock
        self._until = 0.0
        self._failing = False

    def open(self) -> bool:
        return self._clock() >= self._until

    def failed(self, exc: BaseException) -> None:
        self._until = self._clock() + self._seconds
        if not self._failing:
            self._failing = True
            log.warning(
                "%s: Redis failed (%s: %s); skipping it for %.0fs at a time until it answers",
                self._what,
                type(exc).__name__,
                exc,
                self._seconds,
            )

    def succeeded(self) -> None:
        if self._failing:
            self._failing = False
            log.warning("%s: Redis answers again", self._what)


class RecallCache:
    """Read-through cache of recall answers. The generation is read BEFORE the backend is
    asked and the answer stored under it, so an answer that may lack a write acknowledged
    during the query is stored where no reader looks once that write's bump happened."""

    def __init__(
        self,
        redis: Redis,
        *,
        ttl_s: int = ANSWER_TTL_S,
        timeout_s: float = 0.25,
        cooldown_s: float = 5.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._redis, self._ttl_s, self._timeout_s = redis, ttl_s, timeout_s
        self._cooldown = _Cooldown("recall cache", cooldown_s, clock)

    async def recall(
        self, query: RecallQuery, fetch: Callable[[], Awaitable[list[RecallHit]]]
    ) -> tuple[list[RecallHit], Outcome]:
        """The answer to `query`, from the cache or from `fetch()` (whose errors propagate
        and are never cached); with where it came from."""
        outcome, hits, key = await self._lookup(query)
        if hits is not None:
            return hits, self._count(Outcome.HIT)
        hits = await fetch()
        if key is not None:
            await self._store(key, hits)
        return hits, self._count(outcome)

    async def _lookup(
        self, query: RecallQuery
    ) -> tuple[Outcome, list[RecallHit] | None, str | None]:
        if not self._cooldown.open():
            return Outcome.UNCACHED, None, None
        try:
            async with asyncio.timeout(self._timeout_s):
                raw_generation = await self._redis.get(
                    generation_key(query.tenant, query.namespace)
                )
                key = answer_key(query, parse_generation(raw_generation))
                raw = await self._redis.get(key)
        except _CACHE_ERRORS as exc:
            self._cooldown.failed(exc)
            return Outcome.UNCACHED, None, None
        self._cooldown.succeeded()
        if raw is None:
            return Outcome.MISS, None, key
        try:
            return Outcome.HIT, decode_hits(raw), key
        except ValueError as exc:  # another version's entry, or damaged: ask the backend
            log.warning("recall cache: unreadable entry %s (%s); replacing it", key, exc)
            return Outcome.MISS, None, key

    async def _store(self, key: str, hits: list[RecallHit]) -> None:
        try:
            encoded = encode_hits(hits)
        except TypeError:  # a value orjson cannot hold (an integer beyond 64 bits): not cached
            return
        if len(encoded) > MAX_ANSWER_BYTES:
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._redis.set(key, encoded, ex=self._ttl_s)
        except _CACHE_ERRORS as exc:
            self._cooldown.failed(exc)

    @staticmethod
    def _count(outcome: Outcome) -> Outcome:
        metrics.RECALL_CACHE_LOOKUPS.labels(outcome.value).inc()
        return outcome


async def bump_generations(
    redis: Redis, scopes: Collection[Scope], *, timeout_s: float = 0.25
) -> bool:
    """Bump the recall-cache generation of every (tenant, namespace) in `scopes`, pipelined in
    one round trip. Call it after the memory backend acknowledged writes of those scopes and
    before the batch is reported done. Never raises for Redis: False when it failed or took
    longer than `timeout_s` (counted in soma_recall_cache_generation_bumps{outcome="failed"});
    the caller decides whether to retry (GenerationBumper does, with the next batch)."""
    if not scopes:
        return True
    try:
        async with asyncio.timeout(timeout_s):
            async with redis.pipeline(transaction=False) as pipe:
                for tenant, namespace in scopes:
                    pipe.incr(generation_key(tenant, namespace))
                await pipe.execute()
    except _CACHE_ERRORS:
        metrics.RECALL_CACHE_GENERATION_BUMPS.labels("failed").inc(len(scopes))
        return False
    metrics.RECALL_CACHE_GENERATION_BUMPS.labels("ok").inc(len(scopes))
    return True


class GenerationBumper:
    """A writer's bumps: the scopes whose bump failed are bumped again with the next call, and
    after a failure Redis is skipped for `cooldown_s` (the scopes wait), so a Redis outage
    costs a batch at most `timeout_s` once per cooldown."""

    def __init__(
        self,
        redis: Redis,
        *,
        timeout_s: float = 0.25,
        cooldown_s: float = 5.0,
        clock: Clock = time.monotonic,
        what: str = "recall cache bump",
    ) -> None:
        self.redis = redis
        self._timeout_s = timeout_s
        self._cooldown = _Cooldown(what, cooldown_s, clock)
        self.pending: set[Scope] = set()
        for outcome in metrics.BUMP_OUTCOMES:  # a quiet writer shows 0 failed, not no data
            metrics.RECALL_CACHE_GENERATION_BUMPS.labels(outcome)

    async def bump(self, scopes: Collection[Scope]) -> bool:
        """Bump `scopes` and whatever failed before; True when nothing is left pending."""
        self.pending.update(scopes)
        if not self.pending or not self._cooldown.open():
            return not self.pending
        if await bump_generations(self.redis, self.pending, timeout_s=self._timeout_s):
            self.pending.clear()
            self._cooldown.succeeded()
            return True
        self._cooldown.failed(TimeoutError("INCR pipeline failed or timed out"))
        return False
