"""Audit-store failures: the database is unreachable (retry it) or refuses an event."""

from __future__ import annotations

from soma.errors import TransientError
from state.errors import StateUnavailable


# Both bases declare retry_after_s (int vs float | None); the int set here satisfies both.
class AuditStoreUnavailable(StateUnavailable, TransientError):  # type: ignore[misc]
    """The audit database cannot be reached or timed out.

    The gateway answers 503 with Retry-After; the audit flow retries in place. If it lasts,
    check SOMA_POSTGRES_DSN and that `soma db upgrade` created the audit tables.
    """

    def __init__(self, message: str, *, retry_after_s: int = 2) -> None:
        StateUnavailable.__init__(self, message, retry_after_s=retry_after_s, reason="audit_store")
