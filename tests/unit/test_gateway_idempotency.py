"""Derived idempotency keys: deterministic, payload-sensitive, tenant-scoped, schema-valid."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from processors.idempotency import canonical_json, derive_idempotency_key

# The memory_write schema's rule for idempotency_key.
_KEY_RULE = re.compile(r"[!-~]{8,200}")

tenants = st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True)
sessions = st.none() | st.text(min_size=1, max_size=64)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
payloads = st.dictionaries(st.text(max_size=12), json_values, min_size=1, max_size=6)


@given(tenants, sessions, payloads)
def test_same_write_same_key_whatever_the_key_order(
    tenant: str, session: str | None, payload: dict[str, Any]
) -> None:
    reordered = dict(reversed(list(payload.items())))
    key = derive_idempotency_key(tenant, session, payload)
    assert key == derive_idempotency_key(tenant, session, reordered)
    assert _KEY_RULE.fullmatch(key)


@given(tenants, sessions, payloads, payloads)
def test_different_payload_different_key(
    tenant: str, session: str | None, first: dict[str, Any], second: dict[str, Any]
) -> None:
    if canonical_json(first) == canonical_json(second):
        return  # the same write, written twice
    assert derive_idempotency_key(tenant, session, first) != derive_idempotency_key(
        tenant, session, second
    )


@given(tenants, tenants, sessions, payloads)
def test_tenants_never_share_a_key(
    first: str, second: str, session: str | None, payload: dict[str, Any]
) -> None:
    if first != second:
        assert derive_idempotency_key(first, session, payload) != derive_idempotency_key(
            second, session, payload
        )


def test_no_session_differs_from_a_session_named_none() -> None:
    payload = {"a": 1}
    assert derive_idempotency_key("t", None, payload) != derive_idempotency_key(
        "t", "None", payload
    )


def test_canonical_json_is_compact_sorted_utf8() -> None:
    assert canonical_json({"b": 1, "a": ["é", None]}) == '{"a":["é",null],"b":1}'.encode()
