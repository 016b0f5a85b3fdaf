"""The memory-backend interface every implementation passes the contract suite against."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol, runtime_checkable

from processors.backend_policy import BackendHealth
from processors.memory import MemoryLink, MemoryWrite, RecallHit, RecallQuery, RememberResult
from processors.memory_keys import MemoryScope


@runtime_checkable
class MemoryBackend(Protocol):
    """Remember, link and recall memories of one scope at a time; report health.

    Failures are `BackendUnavailable` (transient: retry or outbox) or `BackendRejected`
    (the write is invalid: dead-letter); any other exception is a bug.
    """

    name: str

    async def remember(self, write: MemoryWrite) -> RememberResult:
        """Store one write; idempotent on `write.key` (a second write changes nothing)."""
        ...

    async def remember_batch(self, writes: Sequence[MemoryWrite]) -> list[RememberResult]:
        """Store many writes in one round trip per scope; results in the order of `writes`.

        All or nothing per call: on an error nothing of the batch is assumed stored (retrying
        the batch is safe, it is idempotent); `BackendRejected.index` points at the culprit
        when the backend named one.
        """
        ...

    async def link(self, link: MemoryLink) -> None:
        """Record a typed, weighted edge; idempotent on (from_key, to_key, type)."""
        ...

    async def links(self, scope: MemoryScope, from_key: str) -> list[MemoryLink]:
        """Edges recorded from `from_key` in `scope`."""
        ...

    async def recall(self, query: RecallQuery) -> list[RecallHit]:
        """At most `query.top_k` hits of the query's scope, best first."""
        ...

    def recall_stream(self, query: RecallQuery) -> AsyncIterator[RecallHit]:
        """The same hits as `recall`, yielded as they arrive."""
        ...

    async def health(self) -> BackendHealth:
        """Probe now (fast, bounded by the probe timeout) and classify normal|degraded|down."""
        ...

    async def aclose(self) -> None:
        """Release connections; the backend is unusable afterwards."""
        ...
