"""Plan one write-through batch: replays skipped, writes planned, turn links planned, state kept.

Pure: table values come in through two lookups and go out as the new values of every key the
batch touched, so the same planning runs under Faust, Bytewax or a test.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from processors.intake import Event
from processors.source_positions import SourcePositions, position_key
from processors.turn_links import (
    LIMITS_DEFAULT,
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


def split_turn_key(memory_key: str) -> tuple[str, str]:
    """(what every key of the session shares, `role/ts/hash16`): the state keeps the latter."""
    prefix, role, stamp, digest = memory_key.rsplit("/", 3)
    return f"{prefix}/", f"{role}/{stamp}/{digest}"


def _turn_links(
    plan: BatchPlan,
    event: Event,
    kind: str,
    planned: PlannedWrite,
    sessions: Callable[[str], SessionTurns],
    limits: TurnLimits,
) -> list[PlannedLink]:
    """Record the event in its session's turn state; the links it completes (full keys)."""
    role = role_in_turn(kind, event.value)
    raw_trace = event.record.header("traceparent")
    turn = turn_id_of(event.value, raw_trace.decode("latin-1") if raw_trace else None)
    if role is None or turn is None:
        return []
    state = plan.sessions[event.key] if event.key in plan.sessions else sessions(event.key)
    prefix, suffix = split_turn_key(planned.write.key)
    if state.prefix != prefix:  # a new session, or SOMA_NAMESPACE changed: start anew
        state = SessionTurns(prefix=prefix)
    plan.sessions[event.key], short = plan_turn_links(state, turn, suffix, role, limits)
    return [replace(k, from_key=prefix + k.from_key, to_key=prefix + k.to_key) for k in short]


def plan_batch(
    events: Sequence[Event],
    *,
    kinds: Mapping[str, str],
    namespace: str,
    partitions: int,
    sessions: Callable[[str], SessionTurns],
    positions: Callable[[str], SourcePositions],
    now_ms: int,
    limits: TurnLimits = LIMITS_DEFAULT,
) -> BatchPlan:
    """The plan of `events` (source order), given the tables as the batch found them.

    `kinds` maps a physical source topic to what it carries (`conversation`, `tool_result`,
    `memory_write`); `now_ms` stamps the positions written. An event at or below its
    partition's finished position is a replay: its write, links and outputs were made before a
    crash, so it plans none, but it still passes through the turn state (where it changes
    nothing unless that state was lost) and the session and position keys it touches are
    written again: after a kill -9 the local store may be ahead of the changelog, and only a
    new write makes the changelog catch up.
    """
    plan = BatchPlan()
    current: dict[int, SourcePositions] = {}
    for event in events:
        where = current.get(event.partition)
        if where is None:
            where = positions(position_key(event.partition, partitions))
        replay = where.done(event.topic, event.offset)
        current[event.partition] = where.advanced(event.topic, event.offset)
        plan.replayed += replay
        try:
            planned = plan_write(event, kinds[event.topic], namespace)
        except WriteRefused as refused:
            if not replay:
                plan.refused.append((event, refused))
            continue
        links = _turn_links(plan, event, kinds[event.topic], planned, sessions, limits)
        if not replay:
            plan.writes.append(planned)
            plan.links.append(links)
    for partition, where in current.items():
        plan.positions[position_key(partition, partitions)] = where.stamped(now_ms)
    return plan
