"""Memory keys: the upstream idempotency key, and the scoped key every backend stores under."""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime

SEPARATOR = "/"
DEFAULT_UNIVERSE = "default"
# Bounds keep a key usable as a Postgres btree key and an HTTP body field.
MAX_PART_CHARS = 128
MAX_IDEMPOTENCY_CHARS = 512


class MemoryKeyError(ValueError):
    """A tenant, namespace, universe or idempotency key that cannot form a memory key."""


@dataclass(frozen=True)
class MemoryScope:
    """Where a memory lives: nothing is ever read or written across two scopes."""

    tenant: str
    namespace: str
    universe: str = DEFAULT_UNIVERSE

    def __post_init__(self) -> None:
        for field in ("tenant", "namespace", "universe"):
            check_part(field, getattr(self, field))

    @property
    def prefix(self) -> str:
        """`tenant/namespace/universe/`: every memory key of this scope starts with it."""
        return f"{self.tenant}{SEPARATOR}{self.namespace}{SEPARATOR}{self.universe}{SEPARATOR}"


def check_part(field: str, value: str) -> str:
    """A scope part is non-empty, has no separator, no control characters, bounded length."""
    if not isinstance(value, str) or not value:
        raise MemoryKeyError(f"{field} must be a non-empty string")
    problem = _part_problem(value)
    if problem is not None:
        raise MemoryKeyError(f"{field} {problem}")
    return value


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@functools.lru_cache(maxsize=4096)
def _part_problem(value: str) -> str | None:
    # Cached: every write checks its tenant, namespace and universe several times over, and a
    # worker sees few distinct ones.
    if SEPARATOR in value:
        return f"must not contain {SEPARATOR!r}: {value!r}"
    if len(value) > MAX_PART_CHARS:
        return f"is longer than {MAX_PART_CHARS} characters"
    if _CONTROL.search(value):
        return "must not contain control characters"
    return None


def memory_key(scope: MemoryScope, idempotency_key: str) -> str:
    """The key a backend stores a write under: `tenant/namespace/universe/<idempotency key>`.

    The scope is always prepended, even when the idempotency key already starts with the
    tenant (upstream keys do): SomaBrain derives its coordinate from `universe::key` alone and
    ignores the tenant, so a key that did not carry the scope would let two tenants overwrite
    each other. Stripping a leading `tenant/namespace/` would make the mapping non-injective.
    """
    if not isinstance(idempotency_key, str) or not idempotency_key.strip():
        raise MemoryKeyError("idempotency_key must be a non-empty string")
    if len(idempotency_key) > MAX_IDEMPOTENCY_CHARS:
        raise MemoryKeyError(f"idempotency_key is longer than {MAX_IDEMPOTENCY_CHARS} characters")
    return scope.prefix + idempotency_key


def parse_memory_key(key: str) -> tuple[MemoryScope, str]:
    """(scope, idempotency key) of a memory key; the exact inverse of `memory_key`."""
    parts = key.split(SEPARATOR, 3) if isinstance(key, str) else []
    if len(parts) != 4 or not parts[3]:
        raise MemoryKeyError(f"not a memory key (tenant/namespace/universe/key): {key!r}")
    tenant, namespace, universe, rest = parts
    return MemoryScope(tenant, namespace, universe), rest


def upstream_timestamp(ts_seconds: float) -> str:
    """Upstream's key timestamp: UTC, whole seconds, ISO 8601 with `Z` (`2025-01-31T12:00:00Z`)."""
    return datetime.fromtimestamp(int(ts_seconds), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def hash16(text: str) -> str:
    """First 16 hex digits of sha256 over UTF-8: upstream's short content hash."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


_ROLE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def upstream_idempotency_key(
    *, tenant: str, namespace: str, session_id: str, role: str, ts_seconds: float, base: str
) -> str:
    """`{tenant}/{namespace}/{session_id}/{role}/{ts}/{sha256(base)[:16]}`, as upstream builds it.

    `base` is what makes the event unique and stable across retries and replays: the event or
    message id when there is one, otherwise a canonical hash of the payload; never a clock read.
    An empty session is allowed (upstream writes `//` for memories outside a session).
    """
    check_part("tenant", tenant)
    check_part("namespace", namespace)
    if SEPARATOR in session_id:
        raise MemoryKeyError(f"session_id must not contain {SEPARATOR!r}: {session_id!r}")
    if not _ROLE.match(role):
        raise MemoryKeyError(f"role must match {_ROLE.pattern}: {role!r}")
    if not base:
        raise MemoryKeyError("base must be non-empty (an event id or a payload hash)")
    stamp = upstream_timestamp(ts_seconds)
    return SEPARATOR.join((tenant, namespace, session_id, role, stamp, hash16(base)))
