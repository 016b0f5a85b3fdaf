"""Idempotency keys: what the memory service dedupes on, derived deterministically when absent."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

# Bumped if the derivation ever changes, so keys from two derivations can never collide.
KEY_VERSION = "v1"


def canonical_json(value: Any) -> bytes:
    """One byte form per JSON value: sorted keys, no whitespace, UTF-8, no NaN/Infinity.

    Retries of the same write must hash to the same key whatever key order or spacing the client
    used, and a float that JSON cannot carry must fail loudly rather than hash as a string.
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def derive_idempotency_key(tenant: str, session_id: str | None, payload: Mapping[str, Any]) -> str:
    """A deterministic key for a write that came without one: sha256 of tenant, session, payload.

    The tenant is part of the hash so two tenants writing the same payload never dedupe
    against each other; `session_id=None` is distinct from every session string.
    """
    digest = hashlib.sha256(
        canonical_json({"tenant": tenant, "session_id": session_id, "payload": dict(payload)})
    ).hexdigest()
    return f"{KEY_VERSION}-{digest}"
