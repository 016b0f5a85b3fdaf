"""Agent profiles folded from events: where the values are read, idempotence, the listing."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from processors.agent_profiles import (
    LAST_SEEN_RESOLUTION_MS,
    MAX_PROFILES_PER_SESSION,
    NO_AGENTS,
    SessionAgents,
    agent_of,
    fold_agents,
    list_profiles,
    see,
)

MINUTE = LAST_SEEN_RESOLUTION_MS


def test_profile_is_read_from_the_event_or_its_metadata() -> None:
    write = {"agent_profile": "researcher", "persona_id": "ada", "universe": "lab"}
    assert agent_of(write) == ("researcher", "ada", "lab")
    message = {"persona_id": "bo", "metadata": {"agent_profile": "planner", "universe_id": "u"}}
    assert agent_of(message) == ("planner", "bo", "u")
    assert agent_of({"persona_id": "bo", "metadata": {}}) is None
    assert agent_of({"agent_profile": "", "metadata": "not a map"}) is None


def test_a_replayed_event_changes_nothing_and_writes_nothing() -> None:
    event = ("t/s1", "t", {"agent_profile": "a"}, 5 * MINUTE + 7)
    first = fold_agents(lambda _: NO_AGENTS, [event])
    state = first["t/s1"]
    assert fold_agents(lambda _: state, [event]) == {}  # nothing to write again
    assert state.profiles["a"].first_seen_ms == 5 * MINUTE  # kept to the minute


def test_state_round_trips_and_orders_by_last_seen_as_text() -> None:
    state = see(NO_AGENTS, "t", {"agent_profile": "a", "persona_id": "p"}, 3 * MINUTE)
    assert SessionAgents.from_dict(state.to_dict()) == state
    later = see(state, "t", {"agent_profile": "b"}, 1000 * MINUTE)
    assert state.to_dict()["last_seen"] < later.to_dict()["last_seen"]


def test_a_session_keeps_its_most_recent_profiles_only() -> None:
    state = NO_AGENTS
    for n in range(MAX_PROFILES_PER_SESSION + 3):
        state = see(state, "t", {"agent_profile": f"p{n}"}, n * MINUTE)
    assert len(state.profiles) == MAX_PROFILES_PER_SESSION
    assert "p0" not in state.profiles and f"p{MAX_PROFILES_PER_SESSION + 2}" in state.profiles


def test_listing_merges_sessions_per_profile_newest_first() -> None:
    one = see(NO_AGENTS, "t", {"agent_profile": "a", "persona_id": "x"}, 1 * MINUTE)
    two = see(
        NO_AGENTS, "t", {"agent_profile": "a", "persona_id": "y", "universe": "u"}, 9 * MINUTE
    )
    three = see(NO_AGENTS, "t", {"agent_profile": "b"}, 5 * MINUTE)
    listed = list_profiles([one, two, three])
    assert [p.agent_profile for p in listed] == ["a", "b"]
    assert listed[0].persona_ids == ("x", "y") and listed[0].universes == ("u",)
    assert listed[0].sessions == 2
    assert (listed[0].first_seen_ms, listed[0].last_seen_ms) == (1 * MINUTE, 9 * MINUTE)


@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 10**12)), max_size=30))
def test_fold_order_does_not_matter(events: list[tuple[str, int]]) -> None:
    rows = [("t/s", "t", {"agent_profile": name}, at) for name, at in events]
    forward = fold_agents(lambda _: NO_AGENTS, rows).get("t/s", NO_AGENTS)
    backward = fold_agents(lambda _: NO_AGENTS, rows[::-1]).get("t/s", NO_AGENTS)
    assert forward == backward
