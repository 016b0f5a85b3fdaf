"""Client helper for the gateway's streaming recall: hits as their NDJSON lines arrive.

    async with httpx.AsyncClient(base_url=url, headers=auth) as http:
        async for hit in recall_stream(http, "heron dawn", top_k=10):
            print(hit["score"], hit["value"])

Only httpx and orjson: an agent can copy this module without the rest of SomaStream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

STREAM_PATH = "/v1/memory/recall/stream"


class RecallStreamError(Exception):
    """The stream was refused (status, error code, Retry-After), or ended without its summary
    (the backend failed mid-stream, or the connection was cut): the hits seen are incomplete."""

    def __init__(
        self, message: str, *, status: int, error: str, retry_after_s: int | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.error, self.retry_after_s = status, error, retry_after_s


async def recall_stream(
    client: httpx.AsyncClient,
    query: str,
    *,
    top_k: int | None = None,
    namespace: str | None = None,
    universe: str | None = None,
    session_id: str | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Yield each hit (`{key, score, value, occurred_at, coordinate}`) as it arrives, best
    first; raise RecallStreamError if the gateway refuses or the stream ends incomplete.
    `client` carries the base URL and the bearer token."""
    params: dict[str, str | int] = {"query": query}
    optional = {"top_k": top_k, "namespace": namespace, "universe": universe}
    params.update({name: value for name, value in optional.items() if value is not None})
    if session_id is not None:
        params["session_id"] = session_id
    async with client.stream("GET", STREAM_PATH, params=params) as response:
        if response.status_code != 200:
            await response.aread()
            raise _refused(response)
        count = 0
        async for line in response.aiter_lines():
            if not line:
                continue
            item = orjson.loads(line)
            if "result" in item:
                count += 1
                yield item["result"]
            elif "summary" in item:
                if item["summary"]["count"] != count:
                    raise _incomplete(f"summary says {item['summary']['count']}, got {count}")
                return
            elif "error" in item:
                error = item["error"]
                raise RecallStreamError(
                    f"recall stream failed: {error['message']}", status=200, error=error["error"]
                )
    raise _incomplete(f"the stream ended after {count} hits without its summary")


def _incomplete(message: str) -> RecallStreamError:
    return RecallStreamError(message, status=200, error="incomplete")


def _refused(response: httpx.Response) -> RecallStreamError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    retry = response.headers.get("Retry-After")
    return RecallStreamError(
        f"recall stream refused: {response.status_code} {body.get('message', response.text)}",
        status=response.status_code,
        error=str(body.get("error", "http_error")),
        retry_after_s=int(retry) if retry and retry.isdigit() else None,
    )
