"""Compare two memory stores scope by scope: keys and payload hashes (replica vs primary)."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from processors.memory_keys import MemoryScope
from processors.replication import payload_hash
from state.memory.pg import CONNECT_KWARGS, SET_SCOPE


def scope_digest(dsn: str, scope: MemoryScope) -> dict[str, str]:
    """memory key -> payload hash of every memory in `scope` (row-level security applies)."""
    with psycopg.connect(dsn, **CONNECT_KWARGS) as conn, conn.transaction():
        conn.execute(SET_SCOPE, (scope.tenant, scope.namespace, scope.universe))
        rows = conn.execute(
            "SELECT key, value FROM memory_items"
            " WHERE tenant = %s AND namespace = %s AND universe = %s",
            (scope.tenant, scope.namespace, scope.universe),
        ).fetchall()
    return {key: payload_hash(value) for key, value in rows}


def wipe_scope(dsn: str, scope: MemoryScope) -> int:
    """Delete every memory (and link) of `scope`; returns the memories deleted."""
    with psycopg.connect(dsn, **CONNECT_KWARGS) as conn, conn.transaction():
        conn.execute(SET_SCOPE, (scope.tenant, scope.namespace, scope.universe))
        conn.execute("DELETE FROM memory_links")
        return conn.execute("DELETE FROM memory_items").rowcount


@dataclass(frozen=True)
class Difference:
    """How a copy differs from its source in one scope."""

    missing: tuple[str, ...]  # in the source, not in the copy
    extra: tuple[str, ...]  # in the copy, not in the source
    changed: tuple[str, ...]  # in both, payloads differ

    @property
    def equal(self) -> bool:
        return not (self.missing or self.extra or self.changed)


def compare(source: dict[str, str], copy: dict[str, str]) -> Difference:
    """Keys missing from, extra in, and changed in `copy` relative to `source`."""
    return Difference(
        missing=tuple(sorted(source.keys() - copy.keys())),
        extra=tuple(sorted(copy.keys() - source.keys())),
        changed=tuple(sorted(k for k in source.keys() & copy.keys() if source[k] != copy[k])),
    )
