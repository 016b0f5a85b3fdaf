"""SomaBrain's wire format: request bodies from memory values, and answers back into them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from processors.memory import MemoryLink, MemoryWrite, RecallHit, RecallQuery, RememberResult

BACKEND = "somabrain"
# Our own fields inside the stored payload (the service blends `meta` into it), so a recalled
# hit maps back to its memory key and session whatever else the service adds.
KEY_FIELD = "soma_key"
SESSION_FIELD = "session_id"


def _meta(write: MemoryWrite) -> dict[str, Any]:
    meta = dict(write.meta) | {KEY_FIELD: write.key}
    if write.session_id is not None:
        meta[SESSION_FIELD] = write.session_id
    if write.occurred_at is not None:
        # The service filters max_age_seconds on payload timestamps (epoch seconds).
        meta["timestamp"] = write.occurred_at.timestamp()
    return meta


def _item(write: MemoryWrite) -> dict[str, Any]:
    item: dict[str, Any] = {
        "key": write.key,
        "value": dict(write.value),
        "meta": _meta(write),
        "universe": write.universe,
        "tags": list(write.tags),
    }
    if write.ttl_seconds is not None:
        item["ttl_seconds"] = write.ttl_seconds
    if write.trace_id is not None:
        item["trace_id"] = write.trace_id
    return item


def remember(write: MemoryWrite) -> dict[str, Any]:
    """`POST /memory/remember`; the tenant rides in the body too, though only X-Tenant-ID counts."""
    return {"tenant": write.tenant, "namespace": write.namespace, **_item(write)}


def remember_batch(writes: Sequence[MemoryWrite]) -> dict[str, Any]:
    """`POST /memory/remember/batch`: one tenant and namespace, universe per item."""
    first = writes[0]
    return {
        "tenant": first.tenant,
        "namespace": first.namespace,
        "items": [_item(w) for w in writes],
    }


def link(link: MemoryLink) -> dict[str, Any]:
    return {
        "from_key": link.from_key,
        "to_key": link.to_key,
        "type": link.type,
        "weight": link.weight,
        "universe": link.universe,
    }


def recall(query: RecallQuery) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "tenant": query.tenant,
        "namespace": query.namespace,
        "query": query.query,
        "top_k": query.top_k,
        "universe": query.universe,
    }
    if query.min_score is not None:
        payload["min_score"] = query.min_score
    if query.max_age_seconds is not None:
        payload["max_age_seconds"] = query.max_age_seconds
    return payload


def _coordinate(value: Any) -> tuple[float, ...] | None:
    if isinstance(value, list | tuple) and all(isinstance(x, int | float) for x in value):
        return tuple(float(x) for x in value)
    return None


def _warnings(value: Any) -> tuple[str, ...]:
    return tuple(str(w) for w in value) if isinstance(value, list) else ()


def remember_result(write: MemoryWrite, answer: dict[str, Any], request_id: str) -> RememberResult:
    # `deduplicated` is deliberately not read: the service always answers false.
    return RememberResult(
        key=write.key,
        deduplicated=None,
        backend=BACKEND,
        coordinate=_coordinate(answer.get("coordinate")),
        request_id=str(answer.get("request_id") or request_id),
        trace_id=answer.get("trace_id") or write.trace_id,
        warnings=_warnings(answer.get("warnings")),
    )


def batch_results(
    writes: Sequence[MemoryWrite], answer: dict[str, Any], request_id: str
) -> list[RememberResult]:
    """One result per write, matched by key (position when the service omits keys)."""
    items = answer.get("results")
    items = items if isinstance(items, list) else []
    by_key = {i.get("key"): i for i in items if isinstance(i, dict) and i.get("key")}
    results = []
    for index, write in enumerate(writes):
        item = by_key.get(write.key) or (items[index] if index < len(items) else {})
        results.append(remember_result(write, item if isinstance(item, dict) else {}, request_id))
    return results


def recall_hits(query: RecallQuery, answer: dict[str, Any]) -> list[RecallHit]:
    """Hits best first; `session_id` and `min_score` filtered here as well.

    The service has no session filter (its `session_id` names a recall session), so a session
    filter applies to the hits it returned: fewer than top_k may remain.
    """
    hits = []
    for item in answer.get("results") or []:
        if not isinstance(item, dict):
            continue
        raw = item.get("payload")
        payload: dict[str, Any] = raw if isinstance(raw, dict) else {}
        score = float(item.get("score") or 0.0)
        if query.min_score is not None and score < query.min_score:
            continue
        if query.session_id is not None and payload.get(SESSION_FIELD) != query.session_id:
            continue
        key = payload.get(KEY_FIELD) or payload.get("key")
        hits.append(
            RecallHit(
                key=str(key) if key else None,
                score=score,
                value=payload,
                coordinate=_coordinate(item.get("coordinate")),
                layer=item.get("layer"),
            )
        )
    hits.sort(key=lambda h: h.score, reverse=True)
    return hits[: query.top_k]
