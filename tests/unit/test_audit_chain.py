"""The audit hash chain: idempotent appends never fork it, and verify names every tampering."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.audit import SYSTEM_TENANT, audit_event
from processors.audit_chain import GENESIS, ChainHead, Link, Problem, append, link_hash, verify
from schemas import validate

ACTIONS = st.sampled_from(["dlq.replay", "dlq.ack", "topics.apply", "policy.tool_call"])


@st.composite
def events(draw: st.DrawFn, min_size: int = 0, max_size: int = 12) -> list[dict[str, Any]]:
    n = draw(st.integers(min_size, max_size))
    base = draw(st.integers(0, 2**127))  # event ids differ: a repeated id is a redelivery
    return [
        audit_event(
            actor=draw(st.text(min_size=1, max_size=20)),
            tenant="acme",
            action=draw(ACTIONS),
            resource=f"r{i}",
            outcome=draw(st.sampled_from(["ok", "failed", "allow", "deny"])),
            details={"n": i, "x": draw(st.floats(allow_nan=False, allow_infinity=False))},
            event_id=str(uuid.UUID(int=base + i)),
        )
        for i in range(n)
    ]


def chain_of(items: list[dict[str, Any]]) -> tuple[ChainHead, list[Link]]:
    return append(ChainHead(), items, set())


@given(events())
def test_an_appended_chain_verifies_and_links_each_event_to_the_one_before(
    items: list[dict[str, Any]],
) -> None:
    head, links = chain_of(items)
    assert [link.seq for link in links] == list(range(1, len(links) + 1))
    previous = [GENESIS] + [link.hash for link in links]
    assert [link.prev_hash for link in links] == previous[: len(links)]
    assert verify(links, head) == []
    assert head == (ChainHead(links[-1].seq, links[-1].hash) if links else ChainHead())


@given(events(), st.data())
def test_redelivery_never_forks_the_chain(items: list[dict[str, Any]], data: st.DataObject) -> None:
    """At-least-once: a batch delivered again (in part, or with repeats) appends nothing twice."""
    cut = data.draw(st.integers(0, len(items)))
    head, first = chain_of(items[:cut])
    replayed = data.draw(st.integers(0, cut))  # the tail of what was appended comes again
    redelivered = items[cut - replayed : cut] + items[cut:] + items[cut:]
    known = {link.event_id for link in first}
    head, second = append(head, redelivered, known)
    assert first + second == chain_of(items)[1]
    assert verify(first + second, head) == []


@given(events(min_size=3), st.data())
def test_a_changed_event_is_named(items: list[dict[str, Any]], data: st.DataObject) -> None:
    head, links = chain_of(items)
    i = data.draw(st.integers(0, len(links) - 1))
    changed = links[i].canonical.replace('"acme"', '"evil"', 1)
    links[i] = dataclasses.replace(links[i], canonical=changed)
    findings = verify(links, head)
    assert [(f.problem, f.seq) for f in findings] == [(Problem.CHANGED, i + 1)]


@given(events(min_size=3), st.data())
def test_a_changed_and_rehashed_event_is_still_named(
    items: list[dict[str, Any]], data: st.DataObject
) -> None:
    head, links = chain_of(items)
    i = data.draw(st.integers(0, len(links) - 1))
    text = links[i].canonical.replace('"acme"', '"evil"', 1)
    links[i] = dataclasses.replace(
        links[i], canonical=text, hash=link_hash(links[i].prev_hash, text)
    )
    findings = verify(links, head)
    assert {f.problem for f in findings} == {Problem.CHANGED}
    assert {f.seq for f in findings} == {i + 1}


@given(events(min_size=3), st.data())
def test_a_removed_event_is_named(items: list[dict[str, Any]], data: st.DataObject) -> None:
    head, links = chain_of(items)
    i = data.draw(st.integers(0, len(links) - 1))
    del links[i]
    findings = verify(links, head)
    assert findings and {f.problem for f in findings} == {Problem.REMOVED}


@given(events(min_size=3), st.data())
def test_reordered_events_are_named(items: list[dict[str, Any]], data: st.DataObject) -> None:
    head, links = chain_of(items)
    i = data.draw(st.integers(0, len(links) - 2))
    j = data.draw(st.integers(i + 1, len(links) - 1))
    # Swap their places (seq numbers stay in order, as a changed ORDER BY would show them).
    a, b = links[i], links[j]
    links[i] = dataclasses.replace(b, seq=a.seq)
    links[j] = dataclasses.replace(a, seq=b.seq)
    findings = verify(links, head)
    assert findings and {f.problem for f in findings} == {Problem.REORDERED}
    assert i + 1 in {f.seq for f in findings}


def test_audit_events_follow_the_schema_and_map_outcomes_to_decisions() -> None:
    ok = audit_event(
        actor="cli:root@h",
        tenant=SYSTEM_TENANT,
        action="topics.apply",
        resource="topics:*",
        outcome="ok",
        request_id="req-1",
        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )
    validate("agent_audit", ok)
    assert ok["decision"] == "n/a" and ok["details"]["outcome"] == "ok"
    assert ok["trace_context"]["traceparent"].startswith("00-4bf92f35")
    deny = audit_event(actor="p", tenant="acme", action="policy.x", resource="t", outcome="deny")
    validate("agent_audit", deny)
    assert deny["decision"] == "deny" and "trace_context" not in deny
    with pytest.raises(ValueError):
        audit_event(actor="p", tenant="acme", action="a", resource="t", outcome="maybe")  # type: ignore[arg-type]
