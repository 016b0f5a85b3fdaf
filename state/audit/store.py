"""Append audit events to their tenant's hash chain in Postgres, in one transaction per tenant."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from processors.audit_chain import GENESIS, ChainHead, append
from processors.replication import parse_time
from state.audit.errors import AuditStoreUnavailable
from state.memory.pg import CONNECT_KWARGS, make_pool, open_pool

_LOCK_HEAD = """
INSERT INTO audit_heads (tenant, seq, hash) VALUES (%(tenant)s, 0, %(genesis)s)
ON CONFLICT (tenant) DO NOTHING;
"""
_READ_HEAD = "SELECT seq, hash FROM audit_heads WHERE tenant = %s FOR UPDATE"
_KNOWN = "SELECT event_id FROM audit_log WHERE tenant = %s AND event_id = ANY(%s)"
_INSERT = """
INSERT INTO audit_log (tenant, seq, event_id, occurred_at, event, canonical, prev_hash, hash,
                       source_partition, source_offset)
VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s)
"""
_MOVE_HEAD = "UPDATE audit_heads SET seq = %s, hash = %s, updated_at = now() WHERE tenant = %s"


@dataclass(frozen=True)
class Appended:
    """One event to append, and where the audit flow read it."""

    event: dict[str, Any]
    partition: int | None = None
    offset: int | None = None


@asynccontextmanager
async def audit_connection(dsn: str) -> AsyncIterator[AsyncConnection]:
    """One connection for a read (the gateway, the CLI); unreachable → AuditStoreUnavailable."""
    try:
        conn = await AsyncConnection.connect(dsn, **{**CONNECT_KWARGS, "autocommit": True})
    except psycopg.OperationalError as exc:
        raise AuditStoreUnavailable(f"audit store unreachable: {str(exc).strip()}") from exc
    try:
        async with conn:
            yield conn
    except psycopg.OperationalError as exc:
        raise AuditStoreUnavailable(f"audit store failed: {str(exc).strip()}") from exc


class AuditStore:
    """The audit flow's writer: one small pool, chains appended under the tenant's head lock."""

    def __init__(self, dsn: str, *, pool_max: int = 4) -> None:
        self._pool: AsyncConnectionPool = make_pool(dsn, max_size=pool_max)

    async def __aenter__(self) -> AuditStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._pool.close()

    async def append(self, tenant: str, items: Sequence[Appended]) -> int:
        """Append `items` in order to `tenant`'s chain; events already in it are skipped.

        Returns how many were appended. The head row is locked for the transaction, so a
        second writer (a worker fenced out during a rebalance) waits and then sees the new
        head and the appended ids instead of forking the chain.
        """
        try:
            await open_pool(self._pool)
            async with self._pool.connection() as conn, conn.transaction():
                return await self._append(conn, tenant, items)
        except (psycopg.OperationalError, PoolTimeout, OSError) as exc:
            raise AuditStoreUnavailable(f"audit store: {str(exc).strip()}") from exc
        except psycopg.errors.UniqueViolation as exc:
            # Another writer appended between our reads: the retry reads the new head.
            raise AuditStoreUnavailable(f"audit chain moved under us: {exc}") from exc

    async def _append(self, conn: AsyncConnection, tenant: str, items: Sequence[Appended]) -> int:
        await conn.execute(_LOCK_HEAD, {"tenant": tenant, "genesis": GENESIS})
        row = await (await conn.execute(_READ_HEAD, (tenant,))).fetchone()
        assert row is not None  # inserted above when missing
        head = ChainHead(int(row[0]), str(row[1]))
        ids = [str(item.event["event_id"]) for item in items]
        known = {r[0] for r in await (await conn.execute(_KNOWN, (tenant, ids))).fetchall()}
        new_head, links = append(head, [item.event for item in items], known)
        if not links:
            return 0
        where = {str(item.event["event_id"]): item for item in items}
        async with conn.cursor() as cursor:
            await cursor.executemany(
                _INSERT,
                [
                    (
                        tenant,
                        link.seq,
                        link.event_id,
                        parse_time(str(where[link.event_id].event["occurred_at"])),
                        link.canonical,
                        link.canonical,
                        link.prev_hash,
                        link.hash,
                        where[link.event_id].partition,
                        where[link.event_id].offset,
                    )
                    for link in links
                ],
            )
        await conn.execute(_MOVE_HEAD, (new_head.seq, new_head.hash, tenant))
        return len(links)
