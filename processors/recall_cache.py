"""Recall cache keys and values: generation counters, normalized query hashes, hit encoding.

An answer is stored under the generation of its tenant/namespace read *before* the backend was
asked; a write bumps that generation once the backend acknowledged it. A write that lands while
a query runs therefore leaves the query's answer under a generation nobody reads any more.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from processors.memory import RecallHit, RecallQuery

PREFIX = "soma:recall"
ANSWER_TTL_S = 300  # a cached answer lives 5 minutes, generations or not
# An answer larger than this is not cached: 50 large memories would crowd the cache out.
MAX_ANSWER_BYTES = 1024 * 1024
# Bumped when the encoding of an answer changes, so a deploy never reads the old one.
FORMAT = 1


def generation_key(tenant: str, namespace: str) -> str:
    """The Redis key of the (tenant, namespace) generation counter (INCR'd by writes).

    Tenant and namespace never hold '/' (processors.memory_keys.check_part), so the key is
    unambiguous. It has no TTL: see docs/gateway.md on eviction.
    """
    return f"{PREFIX}:gen:{tenant}/{namespace}"


def parse_generation(raw: bytes | str | int | None) -> int:
    """A counter Redis returned; a missing counter is generation 0 (INCR starts it at 1)."""
    return int(raw) if raw is not None else 0


def query_fingerprint(query: RecallQuery) -> str:
    """sha256 of the parameters that shape an answer, in one canonical form.

    Scope parts are resolved before (defaults applied by the caller); the query text is kept
    exactly: every backend sees it verbatim, and two spellings are two questions.
    """
    canonical = {
        "q": query.query,
        "k": query.top_k,
        "s": query.session_id,
        "m": query.min_score,
        "a": query.max_age_seconds,
    }
    return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def answer_key(query: RecallQuery, generation: int) -> str:
    """Where the answer to `query` under `generation` of its tenant/namespace is cached."""
    return (
        f"{PREFIX}:ans:v{FORMAT}:{query.tenant}/{query.namespace}/{query.universe}"
        f"/g{generation}/{query_fingerprint(query)}"
    )


def encode_hits(hits: Sequence[RecallHit]) -> bytes:
    return orjson.dumps([_hit_dict(hit) for hit in hits])


def decode_hits(raw: bytes | str) -> list[RecallHit]:
    """The hits `encode_hits` stored; ValueError when the bytes are not such an answer."""
    try:
        items = orjson.loads(raw)
        return [_hit(item) for item in items]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"not a cached recall answer: {exc}") from None


def _hit_dict(hit: RecallHit) -> dict[str, Any]:
    return {
        "key": hit.key,
        "score": hit.score,
        "value": dict(hit.value),
        "occurred_at": hit.occurred_at.isoformat() if hit.occurred_at else None,
        "coordinate": list(hit.coordinate) if hit.coordinate is not None else None,
        "layer": hit.layer,
    }


def _hit(item: dict[str, Any]) -> RecallHit:
    occurred = item["occurred_at"]
    coordinate = item["coordinate"]
    return RecallHit(
        key=item["key"],
        score=float(item["score"]),
        value=item["value"],
        occurred_at=datetime.fromisoformat(occurred) if occurred else None,
        coordinate=tuple(coordinate) if coordinate is not None else None,
        layer=item["layer"],
    )
