"""Record key rules: every key starts with the tenant id, so tenants partition deterministically."""

from __future__ import annotations

import re
from enum import StrEnum

SEPARATOR = "/"
# A tenant id: the `tenant` schema's pattern. It is the first part of every record key.
TENANT_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def is_tenant(text: str) -> bool:
    return TENANT_PATTERN.fullmatch(text) is not None


class KeyRule(StrEnum):
    """Which event fields make the record key (DESIGN.md, Topics)."""

    TENANT = "tenant"
    TENANT_SESSION = "tenant/session_id"
    TENANT_IDEMPOTENCY = "tenant/idempotency_key"
    TENANT_RUN = "tenant/run_id"
    ORIGINAL = "original"  # dead letters keep the key of the record they carry


class KeyError_(ValueError):
    """An event lacks a field its topic's key rule needs."""


_FIELD = {
    KeyRule.TENANT_SESSION: "session_id",
    KeyRule.TENANT_IDEMPOTENCY: "idempotency_key",
    KeyRule.TENANT_RUN: "run_id",
}


def id_field(rule: KeyRule) -> str:
    """The event field that follows the tenant in keys of `rule` ("tenant" for a tenant key)."""
    if rule is KeyRule.TENANT:
        return "tenant"
    if rule is KeyRule.ORIGINAL:
        raise ValueError("dead-letter keys are copied, not built from a field")
    return _FIELD[rule]


def record_key(rule: KeyRule, event: dict[str, object], tenant: str) -> str:
    """The record key for `event` under `rule`; the tenant always comes first."""
    if not tenant or SEPARATOR in tenant:
        raise KeyError_(f"tenant must be non-empty and contain no '{SEPARATOR}': {tenant!r}")
    if rule is KeyRule.TENANT:
        return tenant
    if rule is KeyRule.ORIGINAL:
        original = event.get("original_key")
        same_tenant = isinstance(original, str) and (
            original == tenant or original.startswith(tenant + SEPARATOR)
        )
        if not same_tenant:
            raise KeyError_("a dead letter must carry original_key starting with its tenant")
        return str(original)
    field = _FIELD[rule]
    value = event.get(field)
    if not isinstance(value, str) or not value:
        raise KeyError_(f"field '{field}' is required to build the record key ({rule.value})")
    return f"{tenant}{SEPARATOR}{value}"


def tenant_of(key: str) -> str:
    """The tenant a record key belongs to."""
    return key.split(SEPARATOR, 1)[0]
