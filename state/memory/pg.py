"""Postgres plumbing shared by the memory backend and the link store: pool, scope, error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import AsyncConnection, errors
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from processors.memory_keys import MemoryScope
from state.memory.errors import BackendRejected, BackendUnavailable, MemoryBackendError

BACKEND = "postgres"
CONNECT_TIMEOUT_S = 3
# One statement (a batch insert, a recall) never runs longer than this: a stuck query must
# surface as BackendUnavailable, not hold a partition.
STATEMENT_TIMEOUT_MS = 10_000
CONNECT_KWARGS: dict[str, Any] = {
    "connect_timeout": CONNECT_TIMEOUT_S,
    "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
    "application_name": "somastream-memory",
}
# The three settings the row-level-security policies read (state/memory/migrations/0001...).
SET_SCOPE = (
    "SELECT set_config('soma.tenant', %s, true), set_config('soma.namespace', %s, true),"
    " set_config('soma.universe', %s, true)"
)
# Which field a rejected row names, by constraint (what the operator should look at).
_CONSTRAINT_FIELDS = {
    "memory_items_key_in_scope": "key",
    "memory_items_scope_parts": "tenant",
    "memory_items_ttl_seconds_check": "ttl_seconds",
    "memory_links_keys_in_scope": "to_key",
    "memory_links_type_check": "type",
    "memory_links_weight_check": "weight",
}


def make_pool(dsn: str, *, max_size: int = 10, timeout_s: float = 2.0) -> AsyncConnectionPool:
    """An unopened pool; `open_pool` opens it inside the running loop."""
    return AsyncConnectionPool(
        dsn,
        min_size=1,
        max_size=max_size,
        open=False,
        timeout=timeout_s,
        kwargs=dict(CONNECT_KWARGS),
        name="soma-memory",
    )


async def open_pool(pool: AsyncConnectionPool) -> None:
    """Open (once) and wait for the first connection, so `down` shows as BackendUnavailable."""
    if not pool.closed:
        return
    try:
        # One direct connection first: a refused connection fails here at once, where the
        # pool would keep retrying in the background until its timeout.
        probe = await psycopg.AsyncConnection.connect(str(pool.conninfo), **CONNECT_KWARGS)
        await probe.close()
    except psycopg.Error as exc:
        raise BackendUnavailable(
            f"postgres: cannot connect: {str(exc).strip()}", backend=BACKEND, reason="connect"
        ) from exc
    try:
        await pool.open(wait=True, timeout=CONNECT_TIMEOUT_S + 1)
    except PoolTimeout as exc:
        await pool.close()
        raise BackendUnavailable(
            f"postgres: no connection within {CONNECT_TIMEOUT_S + 1}s ({exc})",
            backend=BACKEND,
            reason="connect",
        ) from exc


@asynccontextmanager
async def scoped(
    pool: AsyncConnectionPool, scope: MemoryScope, *, pipeline: bool = True
) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction whose row-level security sees exactly `scope`.

    The settings are transaction-local (`set_config(..., true)`), so a pooled connection
    carries no scope into the next caller's transaction. Pipeline mode sends the scope and the
    caller's statements together (off for server-side cursors, which pipelines do not
    support); errors are mapped to the backend's two failure kinds.
    """
    try:
        async with pool.connection() as conn:
            if pipeline:
                async with conn.pipeline(), conn.transaction():
                    await conn.execute(SET_SCOPE, (scope.tenant, scope.namespace, scope.universe))
                    yield conn
            else:
                async with conn.transaction():
                    await conn.execute(SET_SCOPE, (scope.tenant, scope.namespace, scope.universe))
                    yield conn
    except MemoryBackendError:
        raise
    except (psycopg.Error, PoolTimeout, OSError) as exc:
        raise map_error(exc) from exc


def map_error(exc: BaseException) -> MemoryBackendError:
    """Rejected when the data is at fault (constraint, bad value); unavailable otherwise."""
    if isinstance(exc, errors.UndefinedTable):
        return BackendUnavailable(
            "postgres: memory tables missing: run `soma db upgrade`",
            backend=BACKEND,
            reason="schema_missing",
        )
    if isinstance(exc, errors.QueryCanceled):
        return BackendUnavailable(f"postgres: {exc}", backend=BACKEND, reason="timeout")
    if isinstance(exc, errors.InsufficientPrivilege):
        # Only a write outside its own scope trips the RLS check; MemoryWrite refuses those
        # first, so reaching this is a caller bug worth a dead letter, not a retry loop.
        return BackendRejected(
            f"postgres: {exc}", backend=BACKEND, field="tenant", reason="row-level security"
        )
    if isinstance(exc, psycopg.IntegrityError | psycopg.DataError):
        diag = getattr(exc, "diag", None)
        constraint = getattr(diag, "constraint_name", None)
        column = getattr(diag, "column_name", None)
        field = _CONSTRAINT_FIELDS.get(constraint or "", column or "value")
        return BackendRejected(
            f"postgres: {str(exc).strip()}", backend=BACKEND, field=field, reason=str(exc).strip()
        )
    if isinstance(exc, PoolTimeout):
        return BackendUnavailable(f"postgres: {exc}", backend=BACKEND, reason="pool_timeout")
    return BackendUnavailable(
        f"postgres: {type(exc).__name__}: {str(exc).strip()}", backend=BACKEND, reason="connect"
    )
