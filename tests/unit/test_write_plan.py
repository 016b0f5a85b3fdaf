"""Write plans: stable upstream keys, schema-valid WAL and outbox records, outbox replays alike."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.backend_policy import BackendHealth, BreakerState, HealthMode
from processors.memory import RememberResult
from processors.memory_keys import hash16
from processors.turn_links import PlannedLink, TurnRole
from processors.write_plan import (
    WriteRefused,
    event_time,
    memory_write_to_write,
    plan_write,
    session_key_part,
)
from processors.write_records import divert_to_outbox, outbox_item, wal_record
from schemas import validate
from tests.support.write_events import Turn, as_event, memory_write

NS = "somastream"
NOW = datetime(2025, 3, 14, 9, 26, 53, 589000, tzinfo=UTC)
UPSTREAM_KEY = re.compile(
    r"(?P<tenant>[^/]+)/(?P<ns>[^/]+)/(?P<session>[^/]+)/(?P<role>[^/]+)/"
    r"(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)/(?P<hash>[0-9a-f]{16})"
)

sessions = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=120
)
roles = st.sampled_from(["user", "assistant", "system"])
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


def conversation(session: str, role: str, when: datetime) -> dict[str, object]:
    return {
        "event_id": str(uuid.uuid4()),
        "session_id": session,
        "role": role,
        "message": "the heron waits",
        "tenant": "acme",
        "occurred_at": when.isoformat().replace("+00:00", "Z"),
    }


@settings(max_examples=200, deadline=None)
@given(session=sessions, role=roles, when=moments, offset=st.integers(0, 10**9))
def test_upstream_key_is_stable_across_replays_and_has_the_upstream_form(
    session: str, role: str, when: datetime, offset: int
) -> None:
    value = conversation(session, role, when)
    first = plan_write(as_event("conversation.inbound", value, offset=offset), "conversation", NS)
    # A replay is the same record delivered again: another offset, partition and header set
    # (a redelivery after a rebalance) changes nothing.
    again = as_event(
        "conversation.inbound",
        dict(value),
        offset=offset + 7,
        partition=3,
        headers=(("request_id", b"other"),),
        timestamp_ms=42,
    )
    second = plan_write(again, "conversation", NS)
    assert first.idempotency_key == second.idempotency_key
    assert first.write == second.write
    match = UPSTREAM_KEY.fullmatch(first.idempotency_key)
    assert match is not None, first.idempotency_key
    assert (match["tenant"], match["ns"], match["role"]) == ("acme", NS, role)
    assert match["ts"] == when.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert match["hash"] == hash16(str(value["event_id"]))
    assert match["session"] == session_key_part(session)
    assert len(first.idempotency_key) <= 200 and first.idempotency_key.isascii()


@given(a=sessions, b=sessions)
def test_session_parts_of_two_sessions_differ(a: str, b: str) -> None:
    if a != b:
        assert session_key_part(a) != session_key_part(b)
    part = session_key_part(a)
    assert "/" not in part and part.isascii() and part.isprintable() and len(part) <= 64


def test_two_events_of_one_second_get_two_keys() -> None:
    when = datetime(2025, 1, 1, tzinfo=UTC)
    keys = {
        plan_write(
            as_event("conversation.inbound", conversation("s1", "user", when)), "conversation", NS
        ).idempotency_key
        for _ in range(20)
    }
    assert len(keys) == 20


def test_event_time_falls_back_to_the_record_timestamp() -> None:
    value = conversation("s1", "user", NOW)
    del value["occurred_at"]
    event = as_event("conversation.inbound", value, timestamp_ms=1_741_944_413_589)
    assert event_time(event) == NOW
    assert plan_write(event, "conversation", NS).idempotency_key.split("/")[4] == (
        "2025-03-14T09:26:53Z"
    )


def test_wal_record_and_outbox_item_are_schema_valid_and_replay_the_same_write() -> None:
    turn = Turn("acme", "sess-42", 1)
    for topic, value in turn.events():
        kind = "tool_result" if topic == "tool.results" else "conversation"
        planned = plan_write(as_event(topic, value, offset=5), kind, NS)
        result = RememberResult(planned.write.key, False, "somabrain", coordinate=(0.1, 0.2, 0.3))
        wal = wal_record(planned, result, NOW)
        validate("memory_wal", wal)
        assert wal["memory_key"] == planned.write.key and wal["coordinate"] == [0.1, 0.2, 0.3]
        assert wal["source_offset"] == 5 and wal["trace_context"] == value["trace_context"]
        link = PlannedLink("acme/somastream/default/x", planned.write.key, TurnRole.REPLY)
        item = outbox_item(planned, [link], error="down", attempts=1, now=NOW)
        validate("outbox_item", item)
        validate("memory_write", item["write"])
        # What the outbox drain will send is exactly what the write-through would have sent.
        assert memory_write_to_write(item["write"], NS) == planned.write
        assert item["links"] == [
            {"from_key": link.from_key, "to_key": planned.write.key, "type": "reply"}
        ]


def test_explicit_writes_keep_their_key_and_retries_send_identical_content() -> None:
    first_value = memory_write("acme", "s1", 1, content="tea, not coffee", request_id="r-1")
    retry_value = {**first_value, "event_id": str(uuid.uuid4()), "request_id": "r-2"}
    first = plan_write(as_event("memory.requests", first_value), "memory_write", NS)
    retry = plan_write(as_event("memory.requests", retry_value, offset=9), "memory_write", NS)
    assert first.idempotency_key == first_value["idempotency_key"]
    assert first.write.key == f"acme/somastream/default/{first_value['idempotency_key']}"
    # A client retry (new event id and request id) is the same memory: same key and content.
    assert (first.write.key, first.write.value, first.write.meta) == (
        retry.write.key,
        retry.write.value,
        retry.write.meta,
    )
    assert first.write.value["content"] == "tea, not coffee"
    assert first.write.meta["memory_type"] == "semantic"
    validate("outbox_item", outbox_item(first, [], error=None, attempts=0, now=NOW))


@pytest.mark.parametrize(
    "extra", [{"namespace": "a/b"}, {"universe": "u/v"}, {"namespace": "n" * 200}]
)
def test_a_write_no_backend_can_hold_is_refused(extra: dict[str, str]) -> None:
    value = memory_write("acme", "s1", 1, **extra)
    with pytest.raises(WriteRefused) as refused:
        plan_write(as_event("memory.requests", value), "memory_write", NS)
    assert isinstance(refused.value, ValueError)


def test_a_key_longer_than_the_topics_allow_is_refused_naming_the_setting() -> None:
    value = conversation("s" * 60, "assistant", NOW)
    value["tenant"] = "t" * 64
    event = as_event("conversation.outbound", value)
    with pytest.raises(WriteRefused, match="SOMA_NAMESPACE"):
        plan_write(event, "conversation", "n" * 80)
    with pytest.raises(WriteRefused, match="namespace"):
        plan_write(event, "conversation", "a/b")


def health(mode: HealthMode, breaker: BreakerState) -> BackendHealth:
    return BackendHealth("postgres", mode, "probe", None, breaker)


def test_writes_are_diverted_only_when_the_probe_says_down_and_no_trial_is_due() -> None:
    assert divert_to_outbox(health(HealthMode.DOWN, BreakerState.CLOSED))
    # Open or half-open: the call goes through the breaker (refused at once, or the trial).
    assert not divert_to_outbox(health(HealthMode.DOWN, BreakerState.OPEN))
    assert not divert_to_outbox(health(HealthMode.DEGRADED, BreakerState.HALF_OPEN))
    assert not divert_to_outbox(health(HealthMode.NORMAL, BreakerState.CLOSED))
    assert not divert_to_outbox(None)
