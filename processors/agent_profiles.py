"""The agent profiles a session's events named: fold events into per-session state, list per tenant.

Where the values come from, as the gateway stamps them (gateway/context.py): `X-Agent-Profile`,
`X-Persona-Id` and `X-Universe-Id` become the event's `agent_profile`, `persona_id` and
`universe` where its schema has them (memory writes) and its `metadata.agent_profile`,
`metadata.persona_id`, `metadata.universe_id` otherwise (conversation events, tool results).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_PROFILES_PER_SESSION = 16  # a session naming more keeps the most recent ones
# last_seen is kept to this resolution, so a busy session writes its state about once a
# minute, not once per batch.
LAST_SEEN_RESOLUTION_MS = 60_000


@dataclass(frozen=True)
class ProfileSeen:
    """One agent profile as one session's events named it."""

    persona_id: str | None
    universe: str | None
    first_seen_ms: int
    last_seen_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "persona_id": self.persona_id,
            "universe": self.universe,
            "first_seen_ms": self.first_seen_ms,
            "last_seen_ms": self.last_seen_ms,
        }


@dataclass(frozen=True)
class SessionAgents:
    """The profiles of one `tenant/session_id` key; `last_seen_ms` orders a scan (newest first)."""

    tenant: str = ""
    profiles: Mapping[str, ProfileSeen] = field(default_factory=dict)

    @property
    def last_seen_ms(self) -> int:
        return max((p.last_seen_ms for p in self.profiles.values()), default=0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            # Zero-padded so the scan's text ordering is time ordering.
            "last_seen": f"{self.last_seen_ms:015d}",
            "profiles": {name: seen.to_dict() for name, seen in sorted(self.profiles.items())},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SessionAgents:
        profiles = {
            str(name): ProfileSeen(
                _text(row.get("persona_id")),
                _text(row.get("universe")),
                int(row["first_seen_ms"]),
                int(row["last_seen_ms"]),
            )
            for name, row in dict(data.get("profiles") or {}).items()
        }
        return cls(str(data.get("tenant") or ""), profiles)


NO_AGENTS = SessionAgents()


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def agent_of(value: Mapping[str, Any]) -> tuple[str, str | None, str | None] | None:
    """(agent_profile, persona_id, universe) an event names, or None when it names no profile."""
    metadata = value.get("metadata")
    meta: Mapping[str, Any] = metadata if isinstance(metadata, Mapping) else {}
    profile = _text(value.get("agent_profile")) or _text(meta.get("agent_profile"))
    if profile is None:
        return None
    persona = _text(value.get("persona_id")) or _text(meta.get("persona_id"))
    universe = _text(value.get("universe")) or _text(meta.get("universe_id"))
    return profile, persona, universe


def see(state: SessionAgents, tenant: str, value: Mapping[str, Any], at_ms: int) -> SessionAgents:
    """`state` after one event at `at_ms`; the same object when nothing worth storing changed."""
    named = agent_of(value)
    if named is None:
        return state
    profile, persona, universe = named
    at_ms -= at_ms % LAST_SEEN_RESOLUTION_MS
    seen = state.profiles.get(profile)
    if seen is None:
        updated = ProfileSeen(persona, universe, at_ms, at_ms)
    else:
        updated = ProfileSeen(
            persona or seen.persona_id,
            universe or seen.universe,
            min(seen.first_seen_ms, at_ms),
            max(seen.last_seen_ms, at_ms),
        )
        if updated == seen:
            return state
    profiles = {**state.profiles, profile: updated}
    if len(profiles) > MAX_PROFILES_PER_SESSION:
        newest = sorted(profiles.items(), key=lambda item: -item[1].last_seen_ms)
        profiles = dict(newest[:MAX_PROFILES_PER_SESSION])
    return SessionAgents(tenant, profiles)


def fold_agents(
    current: Callable[[str], SessionAgents],
    events: Iterable[tuple[str, str, Mapping[str, Any], int]],
) -> dict[str, SessionAgents]:
    """New state of each key whose profiles changed, from (key, tenant, value, time_ms) events.

    Idempotent: a replayed event changes nothing (times only widen to what was seen).
    """
    changed: dict[str, SessionAgents] = {}
    for key, tenant, value, at_ms in events:
        before = changed.get(key) or current(key)
        after = see(before, tenant, value, at_ms)
        if after is not before:
            changed[key] = after
    return changed


@dataclass(frozen=True)
class AgentProfile:
    """One profile of a tenant: personas and universes it was seen with, and when."""

    agent_profile: str
    persona_ids: tuple[str, ...]
    universes: tuple[str, ...]
    sessions: int
    first_seen_ms: int
    last_seen_ms: int


def list_profiles(rows: Iterable[SessionAgents]) -> list[AgentProfile]:
    """Per-session states merged into one entry per profile, most recently seen first."""
    merged: dict[str, dict[str, Any]] = {}
    for row in rows:
        for name, seen in row.profiles.items():
            entry = merged.setdefault(
                name,
                {"personas": set(), "universes": set(), "sessions": 0, "first": None, "last": 0},
            )
            if seen.persona_id:
                entry["personas"].add(seen.persona_id)
            if seen.universe:
                entry["universes"].add(seen.universe)
            entry["sessions"] += 1
            first = entry["first"]
            entry["first"] = seen.first_seen_ms if first is None else min(first, seen.first_seen_ms)
            entry["last"] = max(entry["last"], seen.last_seen_ms)
    profiles = [
        AgentProfile(
            name,
            tuple(sorted(e["personas"])),
            tuple(sorted(e["universes"])),
            e["sessions"],
            e["first"],
            e["last"],
        )
        for name, e in merged.items()
    ]
    return sorted(profiles, key=lambda p: (-p.last_seen_ms, p.agent_profile))
