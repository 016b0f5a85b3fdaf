"""Idempotent per-session event counts: fold (key, source offset) pairs into count states."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class SessionCount:
    """Events counted for one `tenant/session_id` key and the last source offset folded.

    Keys are co-partitioned with their source partition, so the offsets of one key only grow;
    an event at or below `offset` was already counted and is a replay.
    """

    count: int = 0
    offset: int = -1  # -1: nothing folded yet (Kafka offsets start at 0)

    def to_dict(self) -> dict[str, int]:
        return {"count": self.count, "offset": self.offset}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> SessionCount:
        """Parse a stored value; refuses anything that is not two non-negative-ish ints."""
        count, offset = data.get("count"), data.get("offset")
        if not isinstance(count, int) or not isinstance(offset, int) or count < 0 or offset < -1:
            raise ValueError(f"not a session count: {dict(data)!r}")
        return cls(count=count, offset=offset)


EMPTY = SessionCount()


def fold(state: SessionCount, offset: int) -> SessionCount:
    """Count one event unless its offset was already folded (a replay after a crash)."""
    if offset <= state.offset:
        return state
    return SessionCount(count=state.count + 1, offset=offset)


def fold_batch(
    state: Mapping[str, SessionCount], events: Iterable[tuple[str, int]]
) -> dict[str, SessionCount]:
    """The new state of every key the batch touches, replayed keys included.

    A key whose events were all replays comes back unchanged on purpose: writing it again
    re-publishes its value, so a changelog that fell behind the local store before a kill -9
    catches up (see flows/commit_order.py).
    """
    touched: dict[str, SessionCount] = {}
    for key, offset in events:
        current = touched.get(key)
        if current is None:
            current = state.get(key, EMPTY)
        touched[key] = fold(current, offset)
    return touched
