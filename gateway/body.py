"""Reading a JSON request body: media type, strict parse, batch size, then the body's schema.

Every step is bounded before the next, more expensive one runs: the size (BodyLimitMiddleware),
the media type (415), the parse under strict-JSON rules (400 / 422, schemas/strict_json.py),
the batch size (413) and only then the schema (422, at most a few errors looked for). Bodies
above HEAVY_BODY_BYTES are parsed and validated in a worker thread, at most
HEAVY_BODY_WORKERS at a time, so that one hostile body never holds the event loop (and every
other request, /healthz included) for its whole parse.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from fastapi import Request

from gateway.errors import UnsupportedMediaType
from gateway.limits import check_batch_size
from gateway.request_schemas import body_validator
from schemas.strict_json import loads_strict

HEAVY_BODY_BYTES = 64 * 1024
HEAVY_BODY_WORKERS = 2  # more threads would only compete with the event loop for the GIL
_JSON_TYPES = ("application/json",)


def is_json_media_type(content_type: str | None) -> bool:
    """JSON (`application/json` or `application/*+json`), UTF-8 if a charset is named.

    No Content-Type at all is read as JSON, as FastAPI does, so `curl -d` without a header works.
    """
    if not content_type:
        return True
    media_type, *params = (part.strip().lower() for part in content_type.split(";"))
    is_json = media_type in _JSON_TYPES or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )
    charsets = [p.partition("=")[2].strip('"') for p in params if p.startswith("charset=")]
    return is_json and all(c in ("utf-8", "utf8") for c in charsets)


def parse_body(body: bytes, schema_name: str | None, batch_key: str | None, max_items: int) -> Any:
    """Parse, check the batch size, validate: the pure, CPU-bound part of reading a body."""
    value = loads_strict(body)
    if batch_key and isinstance(value, dict) and isinstance(value.get(batch_key), list):
        check_batch_size(len(value[batch_key]), max_items, f"/{batch_key}")
    if schema_name is not None:
        body_validator(schema_name, max_items)(value)
    return value


def _limiter(request: Request) -> anyio.CapacityLimiter:
    # Created on first use, inside the event loop that owns it.
    state = request.app.state
    limiter: anyio.CapacityLimiter | None = getattr(state, "heavy_body_limiter", None)
    if limiter is None:
        limiter = state.heavy_body_limiter = anyio.CapacityLimiter(HEAVY_BODY_WORKERS)
    return limiter


async def read_json(
    request: Request, schema_name: str | None = None, batch_key: str | None = None
) -> Any:
    """The request's JSON body, parsed strictly and (with `schema_name`) validated."""
    content_type = request.headers.get("content-type")
    if not is_json_media_type(content_type):
        raise UnsupportedMediaType(
            f"the body must be application/json (UTF-8), not {(content_type or '')[:100]!r}",
            supported=["application/json"],
        )
    body = await request.body()
    max_items = request.app.state.settings.max_batch_items
    if len(body) <= HEAVY_BODY_BYTES:
        return parse_body(body, schema_name, batch_key, max_items)
    return await anyio.to_thread.run_sync(
        parse_body, body, schema_name, batch_key, max_items, limiter=_limiter(request)
    )


def json_body(
    schema_name: str | None = None, batch_key: str | None = None
) -> Callable[[Request], Awaitable[Any]]:
    """FastAPI dependency factory: the body, read by `read_json`.

    Declare it after the authentication dependency: FastAPI resolves dependencies in order,
    so an anonymous caller gets 401 before the body is even read.
    """

    async def dependency(request: Request) -> Any:
        return await read_json(request, schema_name, batch_key)

    return dependency
