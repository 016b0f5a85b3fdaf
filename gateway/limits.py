"""Batch size limit: a too-large batch is refused with 413 before any item is validated."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request

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


def batch_limit(key: str) -> Callable[[Request], Awaitable[None]]:
    """FastAPI dependency factory: 413 when `body[key]` lists more than SOMA_MAX_BATCH_ITEMS.

    It runs before body validation, so a 501-item batch is answered with 413 and not with the
    422 of whichever item happens to be invalid; the body is parsed once and cached by Starlette.
    """

    async def dependency(request: Request) -> None:
        try:
            body: Any = await request.json()
        except ValueError:
            return  # malformed JSON: the body validation answers it
        if isinstance(body, dict) and isinstance(body.get(key), list):
            check_batch_size(len(body[key]), request.app.state.settings.max_batch_items, f"/{key}")

    return dependency
