"""Memory values every backend speaks: writes, links, recall queries and hits, results."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from processors.memory_keys import (
    DEFAULT_UNIVERSE,
    MemoryKeyError,
    MemoryScope,
    memory_key,
    parse_memory_key,
)

TOP_K_MAX = 50  # the service's own bound (SomaBrain: top_k 1 to 50)
MAX_QUERY_TERMS = 32  # a recall query ORs its words; more than this adds cost, not recall
MAX_INDEXED_CHARS = 100_000  # text indexed per memory; Postgres caps a tsvector at 1 MiB


@dataclass(frozen=True)
class MemoryWrite:
    """One memory to remember under `key` (a memory key of this write's own scope)."""

    tenant: str
    namespace: str
    key: str
    value: Mapping[str, Any]
    universe: str = DEFAULT_UNIVERSE
    meta: Mapping[str, Any] = field(default_factory=dict)
    session_id: str | None = None
    tags: tuple[str, ...] = ()
    ttl_seconds: int | None = None
    occurred_at: datetime | None = None  # event time: recall ranks recency by it
    trace_id: str | None = None
    traceparent: str | None = None  # W3C context of the event, so backend calls join its trace

    def __post_init__(self) -> None:
        scope, _ = parse_memory_key(self.key)
        if scope != self.scope:
            raise MemoryKeyError(
                f"key {self.key!r} is not in scope {self.scope.prefix!r}: "
                "build it with MemoryWrite.for_event or processors.memory_keys.memory_key"
            )
        if not isinstance(self.value, Mapping) or not self.value:
            raise ValueError("value must be a non-empty JSON object")
        if self.ttl_seconds is not None and self.ttl_seconds < 0:
            raise ValueError("ttl_seconds must be >= 0")
        if self.occurred_at is not None and self.occurred_at.tzinfo is None:
            raise ValueError("occurred_at must be timezone-aware")

    @property
    def scope(self) -> MemoryScope:
        return MemoryScope(self.tenant, self.namespace, self.universe)

    @classmethod
    def for_event(
        cls, scope: MemoryScope, idempotency_key: str, value: Mapping[str, Any], **kwargs: Any
    ) -> MemoryWrite:
        """The write of one event, keyed by its idempotency key inside `scope`."""
        return cls(
            tenant=scope.tenant,
            namespace=scope.namespace,
            universe=scope.universe,
            key=memory_key(scope, idempotency_key),
            value=value,
            **kwargs,
        )


@dataclass(frozen=True)
class MemoryLink:
    """A typed, weighted edge between two memories of one scope (user turn → assistant turn)."""

    tenant: str
    namespace: str
    from_key: str
    to_key: str
    type: str = "related"
    weight: float = 1.0
    universe: str = DEFAULT_UNIVERSE

    def __post_init__(self) -> None:
        for name in ("from_key", "to_key"):
            scope, _ = parse_memory_key(getattr(self, name))
            if scope != self.scope:
                raise MemoryKeyError(f"{name} is not in scope {self.scope.prefix!r}")
        if not self.type or len(self.type) > 64:
            raise ValueError("type must be 1 to 64 characters")
        if not math.isfinite(self.weight) or self.weight < 0:
            raise ValueError("weight must be a finite number >= 0")

    @property
    def scope(self) -> MemoryScope:
        return MemoryScope(self.tenant, self.namespace, self.universe)

    @classmethod
    def between(
        cls, from_key: str, to_key: str, type: str = "related", weight: float = 1.0
    ) -> MemoryLink:
        """The link of two memory keys, in the scope `from_key` names (checked against `to_key`)."""
        scope, _ = parse_memory_key(from_key)
        return cls(
            tenant=scope.tenant,
            namespace=scope.namespace,
            universe=scope.universe,
            from_key=from_key,
            to_key=to_key,
            type=type,
            weight=weight,
        )


@dataclass(frozen=True)
class RecallQuery:
    """What to recall: words to match in one scope, at most `top_k`, optionally filtered."""

    tenant: str
    namespace: str
    query: str
    top_k: int = 3
    universe: str = DEFAULT_UNIVERSE
    min_score: float | None = None
    max_age_seconds: int | None = None
    session_id: str | None = None

    def __post_init__(self) -> None:
        MemoryScope(self.tenant, self.namespace, self.universe)  # validates the parts
        if not self.query.strip():
            raise ValueError("query must not be empty")
        if not 1 <= self.top_k <= TOP_K_MAX:
            raise ValueError(f"top_k must be within 1..{TOP_K_MAX}, got {self.top_k}")
        if self.min_score is not None and not (
            math.isfinite(self.min_score) and self.min_score >= 0
        ):
            raise ValueError("min_score must be a finite number >= 0")
        if self.max_age_seconds is not None and self.max_age_seconds < 0:
            raise ValueError("max_age_seconds must be >= 0")

    @property
    def scope(self) -> MemoryScope:
        return MemoryScope(self.tenant, self.namespace, self.universe)


@dataclass(frozen=True)
class RecallHit:
    """One recalled memory, best first. `coordinate` only where the backend has one."""

    key: str | None
    score: float
    value: Mapping[str, Any]
    occurred_at: datetime | None = None
    coordinate: tuple[float, ...] | None = None
    layer: str | None = None


@dataclass(frozen=True)
class RememberResult:
    """What a backend answered for one write.

    `deduplicated` is True/False where the backend knows (Postgres), None where it does not:
    SomaBrain always answers false, so its answer is not evidence either way.
    """

    key: str
    deduplicated: bool | None
    backend: str
    coordinate: tuple[float, ...] | None = None
    request_id: str | None = None
    trace_id: str | None = None
    warnings: tuple[str, ...] = ()


_WORD = re.compile(r"\w+", re.UNICODE)


def recall_terms(query: str) -> list[str]:
    """The distinct lower-cased words of a query, in order, at most MAX_QUERY_TERMS.

    Only `\\w` runs survive, so the terms can be joined into a tsquery without escaping.
    """
    seen: dict[str, None] = {}
    for match in _WORD.finditer(query.lower()):
        seen.setdefault(match.group(0), None)
        if len(seen) == MAX_QUERY_TERMS:
            break
    return list(seen)


def any_word_tsquery(terms: list[str]) -> str:
    """`a | b | c`: recall ranks memories by how many query words they hold, not all of them."""
    return " | ".join(terms)


def memory_text(value: Any, limit: int = MAX_INDEXED_CHARS) -> str:
    """The text of a JSON value that recall searches: its string leaves, in key order, bounded."""
    parts: list[str] = []
    size = 0
    stack: list[Any] = [value]
    while stack and size < limit:
        item = stack.pop()
        if isinstance(item, str):
            parts.append(item)
            size += len(item) + 1
        elif isinstance(item, Mapping):
            stack.extend(item[k] for k in sorted(item, key=str, reverse=True))
        elif isinstance(item, list | tuple):
            stack.extend(reversed(item))
    return " ".join(parts)[:limit]
