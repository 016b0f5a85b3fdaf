"""Memory-backend failures: transient (retry or outbox) versus rejected (dead-letter)."""

from __future__ import annotations

from soma.errors import TransientError
from state.errors import StateError


class MemoryBackendError(StateError):
    """Root of every memory-backend failure."""

    backend: str = "unknown"


class BackendUnavailable(MemoryBackendError, TransientError):
    """The backend cannot take the call now: down, timeout, 5xx, 429, breaker open, bad token.

    Transient for the write itself: retry after `retry_after_s` or park it in the outbox. A
    TransientError, so a flow on the kit retries it in place with backoff.
    `reason` is a short token for metrics and logs (`timeout`, `connect`, `server_error`,
    `rate_limited`, `breaker_open`, `unauthorized`, ...). If it persists, look at the
    backend's health (`soma db upgrade` for a missing table, SOMA_API_TOKEN for `unauthorized`).
    """

    def __init__(
        self,
        message: str,
        *,
        backend: str,
        reason: str,
        retry_after_s: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.backend = backend
        self.reason = reason
        self.retry_after_s = retry_after_s
        self.status = status


class OperationUnsupported(MemoryBackendError):
    """The backend has no such operation (SomaBrain answers 404 on /link): use a fallback.

    Not a failure of the backend: it answered. Callers in this package handle it; it never
    reaches a flow.
    """

    def __init__(self, message: str, *, backend: str, operation: str) -> None:
        super().__init__(message)
        self.backend = backend
        self.operation = operation


class BackendRejected(MemoryBackendError):
    """The backend says this write is invalid: retrying cannot help, dead-letter it.

    `field` names what was refused (`value`, `items[3].key`), `reason` says why, and `index`
    is the position in a batch when the backend pointed at one item.
    """

    def __init__(
        self,
        message: str,
        *,
        backend: str,
        field: str | None,
        reason: str,
        index: int | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.backend = backend
        self.field = field
        self.reason = reason
        self.index = index
        self.status = status
