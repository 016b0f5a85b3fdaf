"""Link planning: each link of a turn planned exactly once, whatever order its ends arrive in."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.tracing import new_traceparent
from processors.turn_links import (
    NO_TURNS,
    PlannedLink,
    SessionTurns,
    TurnLimits,
    TurnRole,
    plan_turn_links,
    role_in_turn,
    turn_id_of,
)

End = tuple[str, str, TurnRole]  # (turn id, memory key, role)


@st.composite
def sessions_of_turns(draw: st.DrawFn) -> list[End]:
    """The ends of a few turns: 0-2 user messages, 0-3 replies, 0-3 tool results each."""
    ends: list[End] = []
    for turn in range(draw(st.integers(1, 5))):
        for role, most in ((TurnRole.USER, 2), (TurnRole.REPLY, 3), (TurnRole.TOOL_RESULT, 3)):
            for n in range(draw(st.integers(0, most))):
                ends.append((f"t{turn}", f"k/{turn}/{role.value}/{n}", role))
    return ends


def expected_links(ends: list[End]) -> set[PlannedLink]:
    users = [(turn, key) for turn, key, role in ends if role is TurnRole.USER]
    return {
        PlannedLink(user, key, role)
        for turn, key, role in ends
        if role is not TurnRole.USER
        for user_turn, user in users
        if user_turn == turn
    }


def run(ends: list[End], state: SessionTurns = NO_TURNS) -> tuple[SessionTurns, list[PlannedLink]]:
    planned: list[PlannedLink] = []
    for turn, key, role in ends:
        state, links = plan_turn_links(state, turn, key, role)
        planned.extend(links)
    return state, planned


@settings(max_examples=300, deadline=None)
@given(ends=sessions_of_turns(), data=st.data())
def test_links_do_not_depend_on_arrival_order(ends: list[End], data: st.DataObject) -> None:
    order = data.draw(st.permutations(ends))
    _, planned = run(list(order))
    assert len(planned) == len(set(planned)), "a link was planned twice"
    assert set(planned) == expected_links(ends)


@settings(max_examples=100, deadline=None)
@given(ends=sessions_of_turns(), data=st.data())
def test_replaying_seen_events_plans_nothing_new(ends: list[End], data: st.DataObject) -> None:
    state, _ = run(ends)
    replay = data.draw(st.lists(st.sampled_from(ends), max_size=10)) if ends else []
    again, planned = run(replay, state)
    assert planned == [] and again == state


def test_state_survives_its_changelog_form() -> None:
    state, _ = run([("t1", "k/u", TurnRole.USER), ("t1", "k/r", TurnRole.REPLY)])
    assert SessionTurns.from_dict(state.to_dict()) == state
    broken_values = (
        {},
        {"prefix": "", "turns": []},  # not a map of turns
        {"prefix": "", "turns": {"t": [[]]}},  # a turn without its members
        {"prefix": "", "turns": {"t": [[], [["k", "x"]]]}},  # an unknown role
    )
    for broken in broken_values:
        with pytest.raises(ValueError):
            SessionTurns.from_dict(broken)


def test_state_is_bounded_and_forgets_the_oldest_turns() -> None:
    limits = TurnLimits(max_turns=2, max_users=1, max_members=2)
    state = NO_TURNS
    for turn in ("t1", "t2", "t3"):
        state, _ = plan_turn_links(state, turn, f"k/{turn}/u", TurnRole.USER, limits)
    assert list(state.turns) == ["t2", "t3"]
    _, late = plan_turn_links(state, "t1", "k/t1/r", TurnRole.REPLY, limits)
    assert late == []  # t1 was forgotten: its late reply stays unlinked
    for n in range(3):
        state, _ = plan_turn_links(state, "t3", f"k/t3/r{n}", TurnRole.REPLY, limits)
    assert [k for k, _ in state.members("t3")] == ["k/t3/r1", "k/t3/r2"]


def test_turn_id_prefers_the_explicit_id_then_the_event_trace_then_the_header() -> None:
    event_trace, header_trace = new_traceparent(), new_traceparent()
    traced = {"trace_context": {"traceparent": event_trace.header()}}
    assert turn_id_of({**traced, "metadata": {"turn_id": "turn-9"}}, None) == "i:turn-9"
    assert turn_id_of(traced, header_trace.header()) == f"t:{event_trace.trace_id}"
    assert turn_id_of({"metadata": {}}, header_trace.header()) == f"t:{header_trace.trace_id}"
    assert turn_id_of({"metadata": {"turn_id": ""}}, "garbage") is None


def test_roles_in_a_turn() -> None:
    assert role_in_turn("conversation", {"role": "user"}) is TurnRole.USER
    assert role_in_turn("conversation", {"role": "assistant"}) is TurnRole.REPLY
    assert role_in_turn("conversation", {"role": "system"}) is None
    assert role_in_turn("tool_result", {}) is TurnRole.TOOL_RESULT
    assert role_in_turn("memory_write", {"role": "user"}) is None
