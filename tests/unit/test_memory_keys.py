"""Memory keys: injective, scoped, and the upstream idempotency key format."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.memory import MemoryLink, MemoryWrite, RecallQuery, memory_text, recall_terms
from processors.memory_keys import (
    MemoryKeyError,
    MemoryScope,
    hash16,
    memory_key,
    parse_memory_key,
    upstream_idempotency_key,
)

part = st.text(
    alphabet=st.characters(blacklist_characters="/", blacklist_categories=("Cc", "Cs")),
    min_size=1,
    max_size=20,
)
idem = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60
).filter(str.strip)


@given(part, part, part, idem)
def test_memory_key_round_trips(tenant: str, namespace: str, universe: str, key: str) -> None:
    scope = MemoryScope(tenant, namespace, universe)
    assert parse_memory_key(memory_key(scope, key)) == (scope, key)


@given(part, part, part, part, idem, idem)
def test_two_scopes_never_share_a_memory_key(
    t1: str, t2: str, ns: str, universe: str, k1: str, k2: str
) -> None:
    a, b = MemoryScope(t1, ns, universe), MemoryScope(t2, ns, universe)
    if a != b:
        assert memory_key(a, k1) != memory_key(b, k2)


def test_upstream_key_already_carrying_a_tenant_cannot_reach_another_tenant() -> None:
    # Tenant "a" naming tenant "b" in its idempotency key still lands under "a/".
    forged = memory_key(MemoryScope("a", "ns"), "b/ns/default/x")
    assert forged.startswith("a/ns/default/")
    assert forged != memory_key(MemoryScope("b", "ns"), "x")


@pytest.mark.parametrize(
    "tenant, namespace", [("", "ns"), ("a/b", "ns"), ("a", ""), ("a", "x/y"), ("a\n", "ns")]
)
def test_scope_parts_are_refused_when_they_could_break_the_key(tenant: str, namespace: str) -> None:
    with pytest.raises(MemoryKeyError):
        MemoryScope(tenant, namespace)


def test_upstream_idempotency_key_matches_the_upstream_format() -> None:
    key = upstream_idempotency_key(
        tenant="acme",
        namespace="wm",
        session_id="s1",
        role="user",
        ts_seconds=1700000000.9,
        base="m1",
    )
    assert key == f"acme/wm/s1/user/2023-11-14T22:13:20Z/{hash16('m1')}"
    assert re.fullmatch(r"[0-9a-f]{16}", key.rsplit("/", 1)[1])


@given(st.floats(min_value=0, max_value=4e9), idem)
def test_upstream_key_is_stable_for_the_same_event(ts: float, base: str) -> None:
    make = lambda: upstream_idempotency_key(  # noqa: E731
        tenant="t", namespace="n", session_id="s", role="assistant", ts_seconds=ts, base=base
    )
    assert make() == make()
    assert make().split("/")[:4] == ["t", "n", "s", "assistant"]


def test_upstream_key_refuses_a_session_with_a_separator() -> None:
    with pytest.raises(MemoryKeyError):
        upstream_idempotency_key(
            tenant="t", namespace="n", session_id="a/b", role="user", ts_seconds=0, base="x"
        )


def test_a_write_must_carry_a_key_of_its_own_scope() -> None:
    scope = MemoryScope("acme", "wm")
    ok = MemoryWrite.for_event(scope, "k", {"text": "hi"})
    assert ok.key == "acme/wm/default/k"
    with pytest.raises(MemoryKeyError):
        MemoryWrite(tenant="other", namespace="wm", key=ok.key, value={"text": "hi"})
    with pytest.raises(MemoryKeyError):
        MemoryLink(tenant="acme", namespace="wm", from_key=ok.key, to_key="other/wm/default/k")


@pytest.mark.parametrize("top_k", [0, 51])
def test_recall_top_k_is_bounded(top_k: int) -> None:
    with pytest.raises(ValueError, match="top_k"):
        RecallQuery("acme", "wm", "hello", top_k=top_k)


@given(st.text(max_size=200))
def test_recall_terms_are_plain_words(query: str) -> None:
    terms = recall_terms(query)
    assert len(terms) == len(set(terms)) <= 32
    assert all(re.fullmatch(r"\w+", t) for t in terms)


def test_memory_text_collects_string_leaves_in_key_order() -> None:
    value = {"b": ["two", {"c": "three"}], "a": "one", "n": 5}
    assert memory_text(value) == "one two three"
