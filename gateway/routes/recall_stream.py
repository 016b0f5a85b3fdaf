"""GET /v1/memory/recall/stream: recall as NDJSON, one line per hit as the backend yields it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from gateway.openapi import responses
from gateway.routes.recall import (
    backend_refused,
    backend_unavailable,
    hit_body,
    memory_backend,
    recall_query,
)
from processors.memory import RecallHit, RecallQuery
from state.memory.backend import MemoryBackend
from state.memory.errors import BackendRejected, BackendUnavailable

router = APIRouter(tags=["memory"])

NDJSON = "application/x-ndjson"
_LINES = (
    'Lines of one JSON object each: `{"result": {key, score, value, occurred_at, coordinate}}` '
    'per hit, best first, then `{"summary": {"count", "namespace", "universe"}}`. A failure '
    'after the first byte ends the stream with `{"error": {"error", "message"}}` instead of '
    "the summary: a stream without its summary line is incomplete."
)


def _line(obj: dict[str, Any]) -> bytes:
    # UTC as "Z", as pydantic writes it in the plain route's answer.
    return orjson.dumps(obj, option=orjson.OPT_UTC_Z) + b"\n"


async def _close(hits: AsyncIterator[RecallHit]) -> None:
    close = getattr(hits, "aclose", None)  # async generators hold a cursor until closed
    if close is not None:
        await close()


@router.get(
    "/v1/memory/recall/stream",
    summary="Recall memories, streamed as NDJSON",
    response_class=StreamingResponse,
    responses={
        200: {"description": _LINES, "content": {NDJSON: {"schema": {"type": "string"}}}},
        **responses(401, 422, 503),
    },
)
async def recall_stream(
    wanted: RecallQuery = Depends(recall_query),
    backend: MemoryBackend = Depends(memory_backend),
) -> StreamingResponse:
    """The hits `GET /v1/memory/recall` would answer, sent as the backend yields them; not
    cached. The backend is asked before the status is sent, so a backend that is unavailable
    then is 503 with Retry-After like the plain route."""
    hits = backend.recall_stream(wanted)
    try:
        first = await anext(hits, None)
    except BackendUnavailable as exc:
        await _close(hits)
        raise backend_unavailable(exc) from None
    except BackendRejected as exc:
        await _close(hits)
        raise backend_refused(exc) from None
    except BaseException:
        await _close(hits)
        raise

    async def lines() -> AsyncIterator[bytes]:
        count = 0
        try:
            if first is not None:
                count += 1
                yield _line({"result": hit_body(first)})
            async for hit in hits:
                count += 1
                yield _line({"result": hit_body(hit)})
        except (BackendUnavailable, BackendRejected) as exc:
            code = "memory_unavailable" if isinstance(exc, BackendUnavailable) else "rejected"
            yield _line({"error": {"error": code, "message": str(exc)}})
            return
        finally:
            await _close(hits)
        summary = {"count": count, "namespace": wanted.namespace, "universe": wanted.universe}
        yield _line({"summary": summary})

    return StreamingResponse(lines(), media_type=NDJSON)
