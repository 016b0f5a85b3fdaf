"""Read API of the session-counts table: find the owning worker and ask it for one key."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from processors.keys import KeyRule, record_key
from processors.partitioning import partition_for
from soma.settings import Settings
from state.errors import StateUnavailable
from state.locator import locator_for
from topics.registry import TopicRegistry

SOURCE = "conversation.inbound"  # the flow's source topic (flows/session_counts.py)
HTTP_TIMEOUT_S = 1.0


async def read_session_count(
    settings: Settings, tenant: str, session_id: str, *, app_id: str | None = None
) -> dict[str, Any]:
    """Events counted so far for one session, answered by the worker that owns its partition.

    `app_id` defaults to the flow's group under the settings' topic prefix (as `soma flow run`).

    Returns {"tenant", "session_id", "count", "partition", "owner" (the worker URL), "offset"};
    a session never seen counts 0. Raises StateUnavailable (retry later) when no worker owns
    the partition, the group is rebalancing, or the owner is restoring or unreachable; raises
    processors.keys.KeyError_ (a ValueError) for a tenant or session id that cannot form a key.
    """
    # Same default as flows/session_counts.DEFAULT_APP_ID (state/ may not import flows/).
    app_id = app_id or f"{settings.topic_prefix}soma-session-counts"
    key = record_key(KeyRule.TENANT_SESSION, {"session_id": session_id}, tenant)
    topic = TopicRegistry(settings.topic_prefix).get(SOURCE).name
    locator = locator_for(settings)
    partition = partition_for(key.encode(), await locator.partitions(topic))
    url = await locator.owner_url(app_id, topic, partition)
    body = await _ask_worker(url, key)
    if body is None:
        locator.forget(app_id)  # our cached assignment is stale; the next call re-reads it
        raise StateUnavailable(
            f"worker {url} no longer owns {topic}[{partition}]", reason="moved", retry_after_s=1
        )
    return {
        "tenant": tenant,
        "session_id": session_id,
        "count": int(body["count"]),
        "partition": partition,
        "owner": url,
        "offset": int(body["offset"]),
    }


async def _ask_worker(url: str, key: str) -> dict[str, Any] | None:
    """The worker's answer, None when it says it does not own the key."""
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as client:
            response = await client.get(f"{url}/state/session-counts/{quote(key, safe='')}")
    except httpx.HTTPError as exc:
        raise StateUnavailable(
            f"worker {url} unreachable: {exc!r}", reason="unreachable", retry_after_s=2
        ) from exc
    if response.status_code == 421:
        return None
    if response.status_code != 200:
        retry = response.headers.get("Retry-After", "1")
        raise StateUnavailable(
            f"worker {url} answered {response.status_code}",
            reason="restoring" if response.status_code == 503 else "worker",
            retry_after_s=int(retry) if retry.isdigit() else 1,
        )
    body: dict[str, Any] = response.json()
    if body.get("owner") is not True:
        return None
    return body
