"""Plan one write-through batch: replays skipped, writes planned, turn links planned, state kept.

Pure: table values come in through two lookups and go out as the new values of every key the
batch touched, so the same planning runs under Faust, Bytewax or a test.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from processors.intake import Event
from processors.source_positions import SourcePositions, position_key
from processors.turn_links import (
    LIMITS_DEFAULT,
    NO_TURNS,
    PlannedLink,
    SessionTurns,
    TurnLimits,
    plan_turn_links,
    role_in_turn,
    turn_id_of,
)
from processors.write_plan import PlannedWrite, WriteRefused, plan_write


@dataclass
class BatchPlan:
    """What one batch asks of the backend, and the table values it leaves behind."""

    writes: list[PlannedWrite] = field(default_factory=list)
    links: list[list[PlannedLink]] = field(default_factory=list)  # per write: links it completes
    refused: list[tuple[Event, WriteRefused]] = field(default_factory=list)
    replayed: int = 0  # events skipped: finished before a crash
    sessions: dict[str, SessionTurns] = field(default_factory=dict)  # table key -> new value
    positions: dict[str, SourcePositions] = field(default_factory=dict)

    def all_links(self) -> list[PlannedLink]:
        return [link for links in self.links for link in links]


def plan_batch(
    events: Sequence[Event],
    *,
    kinds: Mapping[str, str],
    namespace: str,
    partitions: int,
    sessions: Callable[[str], SessionTurns],
    positions: Callable[[str], SourcePositions],
    limits: TurnLimits = LIMITS_DEFAULT,
) -> BatchPlan:
    """The plan of `events` (source order), given the tables as the batch found them.

    `kinds` maps a physical source topic to what it carries (`conversation`, `tool_result`,
    `memory_write`). An event at or below its partition's finished position is a replay: it is
    skipped, and the session state it changed is written again, because after a kill -9 the
    local store may be ahead of the changelog and only a new write makes the changelog catch
    up. Every position key of the batch is written for the same reason.
    """
    plan = BatchPlan()
    current: dict[int, SourcePositions] = {}
    for event in events:
        where = current.get(event.partition)
        if where is None:
            where = positions(position_key(event.partition, partitions))
        kind = kinds[event.topic]
        if where.done(event.topic, event.offset):
            plan.replayed += 1
            current[event.partition] = where
            if role_in_turn(kind, event.value) is not None and event.key not in plan.sessions:
                state = sessions(event.key)
                if state != NO_TURNS:
                    plan.sessions[event.key] = state
            continue
        current[event.partition] = where.advanced(event.topic, event.offset)
        try:
            planned = plan_write(event, kind, namespace)
        except WriteRefused as refused:
            plan.refused.append((event, refused))
            continue
        links: list[PlannedLink] = []
        role = role_in_turn(kind, event.value)
        raw_trace = event.record.header("traceparent")
        turn = turn_id_of(event.value, raw_trace.decode("latin-1") if raw_trace else None)
        if role is not None and turn is not None:
            state = plan.sessions[event.key] if event.key in plan.sessions else sessions(event.key)
            plan.sessions[event.key], links = plan_turn_links(
                state, turn, planned.write.key, role, limits
            )
        plan.writes.append(planned)
        plan.links.append(links)
    for partition, where in current.items():
        plan.positions[position_key(partition, partitions)] = where
    return plan
