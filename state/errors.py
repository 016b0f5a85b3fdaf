"""Errors of the state read API; the gateway turns StateUnavailable into 503 + Retry-After."""

from __future__ import annotations

from soma.errors import SomaError


class StateError(SomaError):
    """Base class for state-layer failures."""


class StateUnavailable(StateError):
    """No worker can answer for the key right now (no owner, rebalancing, restoring, down).

    Transient by nature: retry after `retry_after_s`. If it persists, check that the flow's
    workers run (`soma flow run ...`) and that their consumer group is Stable.
    """

    def __init__(
        self, message: str, *, retry_after_s: int = 1, reason: str = "unavailable"
    ) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.reason = reason


class UnknownStatePage(StateError, LookupError):
    """No flow declares a state page of that name."""

    def __init__(self, route: str) -> None:
        super().__init__(f"no flow keeps a state page called {route[:64]!r}")
        self.route = route
