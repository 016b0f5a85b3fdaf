"""A tenant's agent profiles, read from the write-through flow's `agent-profiles` page.

The source of truth is the flow's `session_agents` table (one row per `tenant/session_id`,
changelog-backed, co-partitioned with the flow's sources): no second copy is kept anywhere,
and the gateway merges the tenant's rows per profile (processors/agent_profiles.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from processors.agent_profiles import AgentProfile, SessionAgents, list_profiles
from processors.scan import ScanQuery, decode_cursor
from state.reads import StateReader

PAGE = "agent-profiles"
PAGE_ROWS = 200  # sessions per scan page
MAX_PAGES = 25  # at most 5,000 sessions, most recently active first, per answer


@dataclass(frozen=True)
class TenantProfiles:
    profiles: list[AgentProfile]
    sessions_read: int
    truncated: bool  # more sessions than MAX_PAGES pages: older sessions were not read


async def tenant_profiles(reader: StateReader, tenant: str) -> TenantProfiles:
    """The tenant's profiles over its most recently active sessions (StateUnavailable while a
    partition of the flow has no ready owner: a partial list would look complete)."""
    rows: list[SessionAgents] = []
    after = None
    for _ in range(MAX_PAGES):
        query = ScanQuery(
            order_by="last_seen", equals={"tenant": tenant}, after=after, limit=PAGE_ROWS
        )
        page, cursor = await reader.scan(PAGE, query)
        rows.extend(SessionAgents.from_dict(row) for row in page)
        if cursor is None:
            return TenantProfiles(list_profiles(rows), len(rows), truncated=False)
        after = decode_cursor(cursor)
    return TenantProfiles(list_profiles(rows), len(rows), truncated=True)
