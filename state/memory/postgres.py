"""The embedded memory backend: Postgres, full-text recall, isolation by row-level security."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from itertools import groupby
from typing import Any, TypeVar

import orjson
import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import PoolTimeout

from processors.backend_policy import RETRY_LOCAL, BackendHealth, RetryPolicy
from processors.memory import (
    MemoryLink,
    MemoryWrite,
    RecallHit,
    RecallQuery,
    RememberResult,
    any_word_tsquery,
    memory_text,
    recall_terms,
)
from processors.memory_keys import MemoryScope
from soma import metrics
from state.memory import sql
from state.memory.errors import BackendUnavailable
from state.memory.health import HealthMonitor
from state.memory.links import PostgresLinkStore
from state.memory.pg import BACKEND, make_pool, map_error, open_pool, scoped
from state.memory.retry import call_with_retries

T = TypeVar("T")
RECENCY_HALF_LIFE_S = 7 * 24 * 3600.0  # a week-old memory ranks at 75 % of a fresh equal match


def _jsonb(value: Any) -> Jsonb:
    return Jsonb(value, dumps=lambda v: orjson.dumps(v).decode())


class PostgresMemoryBackend:
    """MemoryBackend on Postgres (`memory_items`, `memory_links`; see state/memory/migrations).

    Idempotent on the memory key (INSERT … ON CONFLICT DO NOTHING: the first write wins and a
    second answers deduplicated=True). Recall ranks full-text relevance (ts_rank_cd, 0 to 1)
    by recency: score = relevance * (0.5 + 0.5 * 2^(-age / half-life)).
    """

    name = BACKEND

    def __init__(
        self,
        dsn: str,
        *,
        pool_max: int = 10,
        retry: RetryPolicy = RETRY_LOCAL,
        monitor: HealthMonitor | None = None,
        half_life_s: float = RECENCY_HALF_LIFE_S,
    ) -> None:
        self._pool = make_pool(dsn, max_size=pool_max)
        self._links = PostgresLinkStore(self._pool)
        self._retry = retry
        self.monitor = monitor or HealthMonitor(BACKEND)
        self._half_life_s = half_life_s
        self._open_lock = asyncio.Lock()
        self._closed = False

    async def __aenter__(self) -> PostgresMemoryBackend:
        await self._ready()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def remember(self, write: MemoryWrite) -> RememberResult:
        return (await self.remember_batch([write]))[0]

    async def remember_batch(self, writes: Sequence[MemoryWrite]) -> list[RememberResult]:
        if not writes:
            return []
        operation = "remember" if len(writes) == 1 else "remember_batch"
        inserted = await self._guarded(operation, lambda: self._insert(writes))
        results, claimed = [], set()
        for write in writes:
            # A key twice in one batch: the first occurrence is the one that was stored.
            fresh = write.key in inserted and write.key not in claimed
            claimed.add(write.key)
            results.append(
                RememberResult(
                    key=write.key, deduplicated=not fresh, backend=BACKEND, trace_id=write.trace_id
                )
            )
        return results

    async def link(self, link: MemoryLink) -> None:
        await self._guarded("link", lambda: self._links.link(link))

    async def links(self, scope: MemoryScope, from_key: str) -> list[MemoryLink]:
        return await self._guarded("links", lambda: self._links.links(scope, from_key))

    async def recall(self, query: RecallQuery) -> list[RecallHit]:
        terms = recall_terms(query.query)
        if not terms:
            return []
        return await self._guarded("recall", lambda: self._select(query, terms))

    async def recall_stream(self, query: RecallQuery) -> AsyncIterator[RecallHit]:
        terms = recall_terms(query.query)
        if not terms:
            return
        await self._ready()
        async with scoped(self._pool, query.scope, pipeline=False) as conn:
            cursor = conn.cursor(name=f"recall_{uuid.uuid4().hex}")
            params = self._recall_params(query, terms)
            await self.monitor.call("recall_stream", lambda: cursor.execute(sql.RECALL, params))
            async for row in cursor:
                yield _hit(row)
            await cursor.close()

    async def health(self) -> BackendHealth:
        return await self.monitor.probe(self._probe)

    async def aclose(self) -> None:
        self._closed = True
        await self._pool.close()

    async def _ready(self) -> None:
        if self._closed:
            raise BackendUnavailable("postgres: backend closed", backend=BACKEND, reason="closed")
        async with self._open_lock:
            await open_pool(self._pool)

    async def _guarded(self, operation: str, attempt: Callable[[], Awaitable[T]]) -> T:
        async def once() -> T:
            await self._ready()
            return await self.monitor.call(operation, attempt)

        def count(exc: BackendUnavailable, _delay: float) -> None:
            metrics.MEMORY_BACKEND_RETRIES.labels(BACKEND, operation, exc.reason).inc()

        return await call_with_retries(self._retry, once, on_retry=count)

    async def _insert(self, writes: Sequence[MemoryWrite]) -> set[str]:
        """One transaction, one pipelined round trip: per scope, set it and insert its rows."""
        inserted: set[str] = set()
        by_scope = groupby(sorted(writes, key=lambda w: w.scope.prefix), key=lambda w: w.scope)
        groups = [(scope, list(group)) for scope, group in by_scope]
        cursors = []
        async with scoped(self._pool, groups[0][0]) as conn:
            for index, (scope, group) in enumerate(groups):
                if index:
                    await conn.execute(
                        sql.SET_SCOPE_AGAIN, (scope.tenant, scope.namespace, scope.universe)
                    )
                cursors.append(await conn.execute(sql.INSERT_ITEMS, _columns(scope, group)))
            for cursor in cursors:
                inserted.update(row[0] for row in await cursor.fetchall())
        return inserted

    def _recall_params(self, query: RecallQuery, terms: list[str]) -> dict[str, Any]:
        return {
            "tsq": any_word_tsquery(terms),
            "tenant": query.tenant,
            "namespace": query.namespace,
            "universe": query.universe,
            "half_life": self._half_life_s,
            "max_age": query.max_age_seconds,
            "session": query.session_id,
            "min_score": query.min_score or 0.0,
            "top_k": query.top_k,
        }

    async def _select(self, query: RecallQuery, terms: list[str]) -> list[RecallHit]:
        async with scoped(self._pool, query.scope) as conn:
            cursor = await conn.execute(sql.RECALL, self._recall_params(query, terms))
            rows = await cursor.fetchall()
        return [_hit(row) for row in rows]

    async def _probe(self) -> str:
        await self._ready()
        try:
            async with self._pool.connection() as conn:
                cursor = await conn.execute("SELECT to_regclass('memory_items') IS NOT NULL")
                row = await cursor.fetchone()
        except (psycopg.Error, PoolTimeout, OSError) as exc:
            # A pooled connection the server ended (restart, terminated backend) is the
            # backend being down, not a bug: the probe reports it instead of raising.
            raise map_error(exc) from exc
        if not row or not row[0]:
            raise BackendUnavailable(
                "postgres: memory tables missing: run `soma db upgrade`",
                backend=BACKEND,
                reason="schema_missing",
            )
        stats = self._pool.get_stats()
        return (
            f"postgres ok (pool {stats.get('pool_size', 0)}/{self._pool.max_size}, "
            f"waiting {stats.get('requests_waiting', 0)})"
        )


def _columns(scope: MemoryScope, group: list[MemoryWrite]) -> dict[str, Any]:
    """Column arrays for INSERT … SELECT FROM unnest(…): one statement however many rows."""
    return {
        "tenant": scope.tenant,
        "namespace": scope.namespace,
        "universe": scope.universe,
        "keys": [w.key for w in group],
        "values": [_jsonb(dict(w.value)) for w in group],
        "metas": [_jsonb(dict(w.meta)) for w in group],
        "sessions": [w.session_id for w in group],
        "tags": [_jsonb(list(w.tags)) for w in group],
        "ttls": [w.ttl_seconds for w in group],
        "bodies": [memory_text(w.value) for w in group],
        "occurred": [w.occurred_at for w in group],
        "traces": [w.trace_id for w in group],
    }


def _hit(row: tuple[Any, ...]) -> RecallHit:
    key, value, occurred_at, score = row
    return RecallHit(key=key, score=float(score), value=value, occurred_at=occurred_at)
