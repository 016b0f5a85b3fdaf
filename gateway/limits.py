"""Batch size limit: a too-large batch is refused with 413 before any item is validated
(gateway/body.py checks it right after parsing, before the body's schema runs)."""

from __future__ import annotations

from gateway.errors import TooManyItems


def check_batch_size(count: int, limit: int, field: str) -> None:
    """Raise 413 when a batch has more than `limit` items."""
    if count > limit:
        raise TooManyItems(
            f"a batch holds at most {limit} items, got {count}; split it",
            field=field,
            limit=limit,
            count=count,
        )
