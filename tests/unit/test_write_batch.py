"""Batch planning: replays skipped, positions and session state republished, links in-batch."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from processors.partitioning import partition_for
from processors.source_positions import NO_POSITIONS, SourcePositions, position_key
from processors.turn_links import NO_TURNS, SessionTurns, TurnRole
from processors.write_batch import BatchPlan, plan_batch
from processors.write_plan import SOURCE_KINDS
from tests.support.write_events import Turn, as_event, memory_write

PARTITIONS = 6
NOW_MS = 1_741_944_413_589


@given(partitions=st.integers(1, 64), data=st.data())
def test_position_keys_live_on_their_own_partition(partitions: int, data: st.DataObject) -> None:
    partition = data.draw(st.integers(0, partitions - 1))
    key = position_key(partition, partitions)
    assert partition_for(key.encode(), partitions) == partition
    assert not key[0].isalnum()  # never a tenant's record key


def test_positions_only_move_forward_and_survive_their_changelog_form() -> None:
    moved = NO_POSITIONS.advanced("a", 5).advanced("a", 3).advanced("b", 0).stamped(NOW_MS)
    assert moved.offsets == {"a": 5, "b": 0} and moved.written_at_ms == NOW_MS
    assert moved.done("a", 5) and not moved.done("a", 6) and not moved.done("c", 0)
    assert SourcePositions.from_dict(moved.to_dict()) == moved


class Tables:
    """The two tables as dicts, read through the lookups the handler passes."""

    def __init__(self) -> None:
        self.sessions: dict[str, SessionTurns] = {}
        self.positions: dict[str, SourcePositions] = {}

    def plan(self, events: list) -> BatchPlan:  # type: ignore[type-arg]
        return plan_batch(
            events,
            kinds=SOURCE_KINDS,
            namespace="somastream",
            partitions=PARTITIONS,
            sessions=lambda key: self.sessions.get(key, NO_TURNS),
            positions=lambda key: self.positions.get(key, NO_POSITIONS),
            now_ms=NOW_MS,
        )

    def keep(self, plan: BatchPlan) -> None:
        self.sessions.update(plan.sessions)
        self.positions.update(plan.positions)


def turn_events(turn: Turn, first_offset: int) -> list:  # type: ignore[type-arg]
    partition = partition_for(f"{turn.tenant}/{turn.session_id}".encode(), PARTITIONS)
    return [
        as_event(topic, value, partition=partition, offset=first_offset)
        for topic, value in turn.events()
    ]


def test_a_whole_turn_in_one_batch_plans_its_writes_and_links() -> None:
    tables, turn = Tables(), Turn("acme", "s1", 1)
    events = turn_events(turn, 0)
    plan = tables.plan(events)
    assert [w.event for w in plan.writes] == events
    user, reply, tool = (w.write.key for w in plan.writes)
    assert plan.links[0] == []
    assert [(link.from_key, link.to_key, link.type) for link in plan.all_links()] == [
        (user, reply, TurnRole.REPLY),
        (user, tool, TurnRole.TOOL_RESULT),
    ]
    (session,) = plan.sessions
    assert session == "acme/s1"
    (key,) = plan.positions
    assert plan.positions[key].offsets == {t: 0 for t, _ in turn.events()}
    assert plan.positions[key].written_at_ms == NOW_MS


def test_replays_are_skipped_and_their_state_written_again() -> None:
    tables, turn = Tables(), Turn("acme", "s1", 1)
    events = turn_events(turn, 0)
    tables.keep(tables.plan(events))
    replay = tables.plan(events)
    assert replay.replayed == 3 and replay.writes == [] and replay.all_links() == []
    # Written again unchanged: a changelog that fell behind the local store catches up.
    assert replay.sessions == tables.sessions and replay.positions == tables.positions


def test_a_replay_rebuilds_turn_state_a_crash_lost_without_planning_links_again() -> None:
    tables, turn = Tables(), Turn("acme", "s1", 1)
    user, reply, tool = turn_events(turn, 0)
    first = tables.plan([user, reply])
    # Crash after the positions were stored, before the turn state was: only positions kept.
    tables.positions.update(first.positions)
    replay = tables.plan([user, reply])
    assert replay.writes == [] and replay.all_links() == [] and replay.replayed == 2
    assert replay.sessions == first.sessions
    tables.keep(replay)
    # So a tool result arriving afterwards still finds the turn's user message.
    late = tables.plan([tool])
    assert [link.from_key for link in late.all_links()] == [first.writes[0].write.key]


def test_reply_first_links_when_the_user_message_comes_in_a_later_batch() -> None:
    tables, turn = Tables(), Turn("acme", "s1", 1)
    user, reply, tool = turn_events(turn, 0)
    first = tables.plan([reply, tool])
    assert first.all_links() == []
    tables.keep(first)
    second = tables.plan([user])
    planned = {(link.to_key, link.type) for link in second.all_links()}
    assert planned == {
        (first.writes[0].write.key, TurnRole.REPLY),
        (first.writes[1].write.key, TurnRole.TOOL_RESULT),
    }


def test_a_refused_write_is_finished_too_and_explicit_writes_keep_no_session_state() -> None:
    tables = Tables()
    good = memory_write("acme", "s9", 1)
    bad = memory_write("acme", "s9", 2, namespace="no/slash")
    partition = partition_for(b"acme/s9", PARTITIONS)
    events = [
        as_event("memory.requests", value, partition=partition, offset=n)
        for n, value in enumerate((good, bad))
    ]
    plan = tables.plan(events)
    assert [w.event for w in plan.writes] == events[:1]
    assert [event for event, _ in plan.refused] == events[1:]
    assert plan.sessions == {}
    assert next(iter(plan.positions.values())).offsets == {"memory.requests": 1}


def test_session_state_keeps_short_keys_and_starts_anew_when_the_prefix_changes() -> None:
    tables, turn = Tables(), Turn("acme", "s1", 1)
    user, reply, _ = turn_events(turn, 0)
    plan = tables.plan([user])
    state = plan.sessions["acme/s1"]
    assert state.prefix == "acme/somastream/default/acme/somastream/s1/"
    (turn_id,) = state.turns
    (short,) = state.users(turn_id)
    assert plan.writes[0].write.key == state.prefix + short and short.startswith("user/")
    tables.keep(plan)
    # Written under another namespace, the old short keys would name memories that do not
    # exist there: the state starts anew rather than link across namespaces.
    moved = plan_batch(
        [reply],
        kinds=SOURCE_KINDS,
        namespace="elsewhere",
        partitions=PARTITIONS,
        sessions=lambda key: tables.sessions.get(key, NO_TURNS),
        positions=lambda key: NO_POSITIONS,
        now_ms=NOW_MS,
    )
    assert moved.all_links() == []
    assert moved.sessions["acme/s1"].prefix.startswith("acme/elsewhere/")
