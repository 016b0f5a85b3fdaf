"""Link planning: a turn's user message to its assistant replies and tool results, in any order.

A turn is named by its turn id: `metadata.turn_id` when the producer set one, else the W3C
trace id of the event, because an agent answers a user message inside the trace the message
started (the gateway continues the caller's trace, so reply and tool result share it). Within
a session, every user message of a turn is linked to every assistant message (`reply`) and
tool result (`tool_result`) of the same turn. Each link is planned exactly once, when the
second of its two ends is seen, whatever order they arrive in: the per-session state keeps the
ends seen so far. State is bounded (the oldest turns are forgotten), so a turn whose ends
arrive more than `max_turns` turns of its session apart (a consumer far behind on one source
topic) is no longer linked. Keys are opaque here; the caller stores them shortened by the
`prefix` every key of the session shares, to keep the session's changelog record small.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from processors.tracing import parse_traceparent

TURN_ID_FIELD = "turn_id"  # in an event's `metadata`
MAX_TURN_ID_CHARS = 128


class TurnRole(StrEnum):
    """What an event is to its turn."""

    USER = "user"  # opens the turn; the link source
    REPLY = "reply"  # an assistant message answering it
    TOOL_RESULT = "tool_result"  # a tool called while answering it


@dataclass(frozen=True)
class TurnLimits:
    """Bounds of one session's link state (it is one changelog record per session)."""

    max_turns: int = 64
    max_users: int = 4  # user messages of one turn
    max_members: int = 32  # replies and tool results of one turn


LIMITS_DEFAULT = TurnLimits()


# One turn as stored: [user keys, [[key, role], ...] of replies and tool results], oldest first.
TurnEnds = list[list[Any]]


@dataclass(frozen=True)
class SessionTurns:
    """The recent turns of one session by turn id, oldest first; keys without `prefix`.

    Held in the JSON shape it is stored in (decoding a session is one type check per turn, no
    object per turn: a busy session is read and written once per batch). Never mutated: a new
    state is built from a copy.
    """

    turns: Mapping[str, TurnEnds] = field(default_factory=dict)
    prefix: str = ""

    def users(self, turn_id: str) -> list[str]:
        ends = self.turns.get(turn_id)
        return list(ends[0]) if ends else []

    def members(self, turn_id: str) -> list[tuple[str, TurnRole]]:
        ends = self.turns.get(turn_id)
        return [(key, TurnRole(role)) for key, role in ends[1]] if ends else []

    def to_dict(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "turns": self.turns}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SessionTurns:
        """Parse a stored value (raises ValueError on anything else)."""
        turns, prefix = data.get("turns"), data.get("prefix")
        if not isinstance(turns, dict) or not isinstance(prefix, str):
            raise ValueError(f"not session turns: {sorted(data)}")
        try:
            for users, members in turns.values():
                if not isinstance(users, list) or any(m[1] not in _ROLES for m in members):
                    raise ValueError("unknown role")
        except (TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"not session turns: {exc}") from None
        return cls(turns, prefix)


_ROLES = frozenset(role.value for role in TurnRole)


NO_TURNS = SessionTurns()


@dataclass(frozen=True)
class PlannedLink:
    """An edge to record: from the turn's user message to a reply or tool result."""

    from_key: str
    to_key: str
    type: TurnRole


def turn_id_of(value: Mapping[str, Any], traceparent: str | None) -> str | None:
    """The turn an event belongs to: `metadata.turn_id`, else its trace id, else None."""
    metadata = value.get("metadata")
    if isinstance(metadata, Mapping):
        explicit = metadata.get(TURN_ID_FIELD)
        if isinstance(explicit, str) and 0 < len(explicit) <= MAX_TURN_ID_CHARS:
            return f"i:{explicit}"
    context = value.get("trace_context")
    if isinstance(context, Mapping) and isinstance(context.get("traceparent"), str):
        traceparent = context["traceparent"]
    trace = parse_traceparent(traceparent)
    return f"t:{trace.trace_id}" if trace else None


def role_in_turn(source_kind: str, value: Mapping[str, Any]) -> TurnRole | None:
    """USER / REPLY for conversation messages, TOOL_RESULT for tool results, else None."""
    if source_kind == "tool_result":
        return TurnRole.TOOL_RESULT
    if source_kind == "conversation":
        return {"user": TurnRole.USER, "assistant": TurnRole.REPLY}.get(str(value.get("role")))
    return None


def plan_turn_links(
    state: SessionTurns,
    turn_id: str,
    key: str,
    role: TurnRole,
    limits: TurnLimits = LIMITS_DEFAULT,
) -> tuple[SessionTurns, list[PlannedLink]]:
    """Record one end of a turn; the links it completes (none if it was recorded already)."""
    users, members = state.turns.get(turn_id) or ([], [])
    if role is TurnRole.USER:
        if key in users:
            return state, []  # a replay: its links were planned the first time
        links = [PlannedLink(key, member, TurnRole(kind)) for member, kind in members]
        users = [*users, key][-limits.max_users :]
    else:
        if any(member == key for member, _ in members):
            return state, []
        links = [PlannedLink(user, key, role) for user in users]
        members = [*members, [key, role.value]][-limits.max_members :]
    turns = dict(state.turns)  # an updated turn keeps its place; a new one goes last
    turns[turn_id] = [users, members]
    while len(turns) > limits.max_turns:
        del turns[next(iter(turns))]  # forget the oldest turn
    return replace(state, turns=turns), links
