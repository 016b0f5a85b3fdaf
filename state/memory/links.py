"""Memory links in Postgres: the Postgres backend's own, and SomaBrain's (its /link is 404)."""

from __future__ import annotations

import asyncio

from psycopg_pool import AsyncConnectionPool

from processors.memory import MemoryLink
from processors.memory_keys import MemoryScope
from state.memory.pg import open_pool, scoped

_INSERT = """
INSERT INTO memory_links (from_key, to_key, type, weight, tenant, namespace, universe)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (from_key, to_key, type) DO NOTHING
"""
_SELECT = """
SELECT to_key, type, weight FROM memory_links WHERE from_key = %s ORDER BY created_at, to_key
"""


class PostgresLinkStore:
    """Links under row-level security; idempotent on (from_key, to_key, type).

    A second link with the same ends and type changes nothing (its weight included): links are
    replayed as often as the events that make them, and a replay must not rewrite history.
    """

    def __init__(self, pool: AsyncConnectionPool, *, owns_pool: bool = False) -> None:
        self._pool = pool
        self._owns_pool = owns_pool  # True: open on first use, close in aclose
        self._lock = asyncio.Lock()

    async def _ready(self) -> None:
        if self._owns_pool:
            async with self._lock:
                await open_pool(self._pool)

    async def aclose(self) -> None:
        if self._owns_pool:
            await self._pool.close()

    async def link(self, link: MemoryLink) -> None:
        await self._ready()
        async with scoped(self._pool, link.scope) as conn:
            await conn.execute(
                _INSERT,
                (
                    link.from_key,
                    link.to_key,
                    link.type,
                    link.weight,
                    link.tenant,
                    link.namespace,
                    link.universe,
                ),
            )

    async def links(self, scope: MemoryScope, from_key: str) -> list[MemoryLink]:
        await self._ready()
        async with scoped(self._pool, scope) as conn:
            cursor = await conn.execute(_SELECT, (from_key,))
            rows = await cursor.fetchall()
        return [
            MemoryLink(
                tenant=scope.tenant,
                namespace=scope.namespace,
                universe=scope.universe,
                from_key=from_key,
                to_key=to_key,
                type=kind,
                weight=weight,
            )
            for to_key, kind, weight in rows
        ]
