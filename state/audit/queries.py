"""Read a tenant's audit chain: filtered pages, a streamed export, and every link for verify."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from psycopg import AsyncConnection, sql

from processors.audit_chain import ChainHead, Link
from processors.replication import parse_time

_COLUMNS = sql.SQL("seq, event, prev_hash, hash")
EXPORT_FETCH = 500  # rows per round trip of the export's server-side cursor


@dataclass(frozen=True)
class AuditFilter:
    """Which events of one tenant a read returns (every field optional)."""

    action: str | None = None
    actor: str | None = None
    decision: str | None = None
    since: datetime | None = None  # occurred_at >= since
    until: datetime | None = None  # occurred_at < until


def _where(tenant: str, filters: AuditFilter) -> tuple[sql.Composable, list[Any]]:
    clauses: list[sql.Composable] = [sql.SQL("tenant = %s")]
    params: list[Any] = [tenant]
    for column, value in (
        ("action", filters.action),
        ("actor", filters.actor),
        ("decision", filters.decision),
    ):
        if value is not None:
            clauses.append(sql.SQL("event ->> {} = %s").format(sql.Literal(column)))
            params.append(value)
    if filters.since is not None:
        clauses.append(sql.SQL("occurred_at >= %s"))
        params.append(filters.since)
    if filters.until is not None:
        clauses.append(sql.SQL("occurred_at < %s"))
        params.append(filters.until)
    return sql.SQL(" AND ").join(clauses), params


def _row(row: tuple[Any, ...]) -> dict[str, Any]:
    seq, event, prev_hash, hash_ = row
    return {"seq": seq, "hash": hash_, "prev_hash": prev_hash, "event": event}


async def read_page(
    conn: AsyncConnection,
    tenant: str,
    filters: AuditFilter,
    *,
    limit: int,
    after: int | None = None,
    descending: bool = False,
) -> tuple[list[dict[str, Any]], int | None]:
    """(up to `limit` links in chain order or reversed, the cursor of the next page or None).

    The cursor is a sequence number: the next page continues after (or, descending, before)
    it, so links appended meanwhile neither shift nor repeat what a reader already saw.
    """
    where, params = _where(tenant, filters)
    if after is not None:
        where = sql.SQL("{} AND seq {} %s").format(where, sql.SQL("<" if descending else ">"))
        params.append(after)
    query = sql.SQL("SELECT {} FROM audit_log WHERE {} ORDER BY seq {} LIMIT %s").format(
        _COLUMNS, where, sql.SQL("DESC" if descending else "ASC")
    )
    cursor = await conn.execute(query, [*params, limit + 1])
    rows = [_row(r) for r in await cursor.fetchall()]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["seq"] if more and rows else None)


async def export_rows(
    conn: AsyncConnection, tenant: str, filters: AuditFilter
) -> AsyncIterator[dict[str, Any]]:
    """Every matching link in chain order, fetched in slices by a server-side cursor."""
    where, params = _where(tenant, filters)
    query = sql.SQL("SELECT {} FROM audit_log WHERE {} ORDER BY seq").format(_COLUMNS, where)
    async with conn.transaction(), conn.cursor(name="audit_export") as cursor:
        cursor.itersize = EXPORT_FETCH
        await cursor.execute(query, params)
        async for row in cursor:
            yield _row(row)


@dataclass(frozen=True)
class StoredChain:
    """Everything `verify` needs: the links, the recorded head, and links whose query columns
    disagree with their hashed text (a change made where only queries would see it)."""

    links: list[Link]
    head: ChainHead | None
    inconsistent: list[int]


async def read_chain(conn: AsyncConnection, tenant: str) -> StoredChain:
    """Every link of `tenant`'s chain in seq order, and its head."""
    cursor = await conn.execute(
        "SELECT seq, event_id, canonical, prev_hash, hash, event, occurred_at"
        " FROM audit_log WHERE tenant = %s ORDER BY seq",
        (tenant,),
    )
    links, inconsistent = [], []
    for seq, event_id, canonical, prev_hash, hash_, event, occurred_at in await cursor.fetchall():
        links.append(Link(seq, event_id, canonical, prev_hash, hash_))
        if not _consistent(tenant, event_id, canonical, event, occurred_at):
            inconsistent.append(seq)
    row = await (
        await conn.execute("SELECT seq, hash FROM audit_heads WHERE tenant = %s", (tenant,))
    ).fetchone()
    head = ChainHead(int(row[0]), str(row[1])) if row else None
    return StoredChain(links, head, inconsistent)


def _consistent(
    tenant: str, event_id: str, canonical: str, event: Any, occurred_at: datetime
) -> bool:
    try:
        hashed = orjson.loads(canonical)
        return bool(
            hashed == event
            and hashed.get("tenant") == tenant
            and hashed.get("event_id") == event_id
            and parse_time(str(hashed.get("occurred_at"))) == occurred_at
        )
    except (orjson.JSONDecodeError, ValueError, AttributeError):
        return False
