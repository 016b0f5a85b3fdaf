"""A flow's health as its workers report it (GET /health on each member of its group)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from flows.catalog import flow_spec
from state.reads import StateReader

WORKER_TIMEOUT_S = 0.5
_RANK = {"ok": 0, "degraded": 1, "down": 2}


@dataclass(frozen=True)
class FlowHealth:
    """The worst status any worker reports, and a one-line why."""

    status: str  # ok | degraded | down
    detail: str


def combine(group_state: str, answers: Sequence[Mapping[str, Any] | None]) -> FlowHealth | None:
    """Fold the workers' /health answers (None: unreachable); None when the flow never ran.

    Every worker reports every partition of its source, so lag is the largest reported.
    """
    if group_state == "Dead" and not answers:
        return None  # the group never existed: the flow is not part of this plane
    if not answers:
        return FlowHealth("down", f"no worker running (group {group_state})")
    if any(answer is None for answer in answers):
        return FlowHealth("down", f"{answers.count(None)} of {len(answers)} workers unreachable")
    status = max((str(a.get("status", "down")) for a in answers if a), key=_rank)
    lags = [a.get("lag") or {} for a in answers if a]
    seconds = max((float(lag.get("seconds", 0.0)) for lag in lags), default=0.0)
    offsets = max((int(lag.get("offsets", 0)) for lag in lags), default=0)
    if group_state != "Stable":
        status = max(status, "degraded", key=_rank)
    return FlowHealth(status, f"lag {seconds:.1f} s, {offsets} records; group {group_state}")


def _rank(status: str) -> int:
    return _RANK.get(status, 2)


async def flow_answers(
    reader: StateReader, flow: str
) -> tuple[str, list[Mapping[str, Any] | None]] | None:
    """The group's state and every worker's /health answer (None: unreachable), or None when
    the flow never ran against this plane."""
    group = f"{reader.settings.topic_prefix}{flow_spec(flow).app_id}"
    state, urls = await reader.locator.members(group)
    if state == "Dead" and not urls:
        return None
    async with httpx.AsyncClient(timeout=WORKER_TIMEOUT_S) as client:

        async def ask(url: str) -> Mapping[str, Any] | None:
            try:
                body: Mapping[str, Any] = (await client.get(f"{url}/health")).json()
                return body
            except (httpx.HTTPError, ValueError):
                return None

        answers = await asyncio.gather(*(ask(url) for url in urls))
    return state, list(answers)


async def flow_health(reader: StateReader, flow: str) -> FlowHealth | None:
    """Ask every worker of `flow` (found through its consumer group) for its health."""
    found = await flow_answers(reader, flow)
    if found is None:
        return None
    return combine(*found)
