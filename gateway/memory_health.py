"""What GET /v1/health/memory reads: WAL lag, replication lag, outbox, dead letters, backend.

Every source is read concurrently under a deadline; one that cannot be read becomes an
`unknown` component carrying its error, never a failed request. The classification is
`processors/memory_health.py`. Sources, and why each is the one:

- WAL lag: the write-through group's lag on its source topics, read from the broker the lag
  exporter's way (`soma/lag_poller.py`: librdkafka in a child process, so a crash of it costs
  one read, not the gateway), cached for `LAG_CACHE_S`; per tenant from the sampled keys.
- Dead letters: plane-wide, the records the DLQ topics hold (same read); per tenant, the open
  entries of the `dlq-index` flow (a topic's depth does not say whose records it holds).
- Replication lag: the replication workers' `/health` pages (absent when no replication flow
  ever ran against this plane, as in `/healthz`).
- Outbox: the drain workers' summaries (`state/outbox.py`).
- Backend: the gateway's own memory backend (`app.state.memory_backend`), its probe and breaker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from processors.memory_health import (
    Health,
    MemoryHealthThresholds,
    classify_backend,
    classify_dead_letters,
    classify_outbox,
    classify_replication_lag,
    classify_wal_lag,
    worst,
)
from processors.scan import ScanQuery
from soma.lag_exporter import dead_letter_topics, plane_groups
from soma.lag_poller import IsolatedPoller
from soma.settings import Settings
from state.dead_letters import MAX_PAGE
from state.dead_letters import PAGE as DLQ_PAGE
from state.flow_health import flow_answers
from state.lag import GroupTopics, LagReport
from state.memory.backend import MemoryBackend
from state.outbox import outbox_summary
from state.reads import StateReader

WAL_FLOW = "write-through"
REPLICATION_FLOW = "replication"
LAG_CACHE_S = 2.0  # one broker read serves every health request within this window
LAG_TIMEOUT_S = 8.0  # the first read spawns the poll process (about 2 s on this box)
SOURCE_TIMEOUT_S = 2.0  # every other source is a local HTTP or database call


class LagSource(Protocol):
    async def read(self, groups: list[GroupTopics], dlqs: list[str]) -> LagReport: ...

    def close(self) -> None: ...


@dataclass
class Component:
    """One signal: its status, the numbers behind it, and why it could not be read."""

    status: Health
    values: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def body(self) -> dict[str, Any]:
        return {"status": self.status.value, **self.values, "error": self.error}


def unknown(exc: BaseException) -> Component:
    return Component(Health.UNKNOWN, error=f"{type(exc).__name__}: {exc}".rstrip(": "))


class MemoryHealth:
    """Reads the memory plane's health signals for one caller (a tenant, or every tenant)."""

    def __init__(
        self,
        settings: Settings,
        reader: StateReader,
        backend: MemoryBackend,
        thresholds: MemoryHealthThresholds,
        lag_source: LagSource | None = None,
    ) -> None:
        self.settings, self.reader, self.backend = settings, reader, backend
        self.thresholds = thresholds
        # Every tenant gets its own lag series here (the exporter keeps only the top 20).
        wide = settings.model_copy(update={"lag_tenant_series": 1000})
        self._lag_source = lag_source or IsolatedPoller(wide)
        self._groups = [g for g in plane_groups(settings) if g.flow == WAL_FLOW]
        self._dlqs = dead_letter_topics(settings)
        self._lag: tuple[float, LagReport] | None = None
        self._lag_lock = asyncio.Lock()

    def close(self) -> None:
        self._lag_source.close()

    async def lag_report(self) -> LagReport:
        """The write-through group's lag and the DLQ depths, at most LAG_CACHE_S old."""
        async with self._lag_lock:
            if self._lag is not None and time.monotonic() - self._lag[0] < LAG_CACHE_S:
                return self._lag[1]
            async with asyncio.timeout(LAG_TIMEOUT_S):
                report = await self._lag_source.read(self._groups, self._dlqs)
            self._lag = (time.monotonic(), report)
            return report

    async def report(self, tenant: str | None) -> dict[str, Any]:
        """The health body for one tenant (`tenant`) or the whole plane (None)."""
        lag, replication, outbox, dead, backend = await asyncio.gather(
            _guard(self.lag_report(), LAG_TIMEOUT_S),
            _guard(flow_answers(self.reader, REPLICATION_FLOW), SOURCE_TIMEOUT_S),
            _guard(outbox_summary(self.reader), SOURCE_TIMEOUT_S),
            _guard(self._open_dead_letters(tenant), SOURCE_TIMEOUT_S),
            _guard(self.backend.health(), SOURCE_TIMEOUT_S),
        )
        t = self.thresholds
        backend_part = (
            unknown(backend)
            if isinstance(backend, BaseException)
            else Component(
                classify_backend(backend.mode, backend.breaker),
                {
                    "backend": backend.backend,
                    "mode": backend.mode.value,
                    "breaker": backend.breaker.value,
                    "detail": backend.detail,
                },
            )
        )
        tenants = sorted(
            {tenant} if tenant is not None else _tenants_seen(lag, replication, outbox, dead)
        )
        rows = []
        for name in tenants:
            parts = {
                "wal_lag": _wal_lag(t, lag, name),
                "replication_lag": _replication_lag(t, replication, name),
                "outbox": _outbox(t, outbox, name),
                "dead_letters": _tenant_dead_letters(t, dead, name),
            }
            rows.append(_row(name, {**parts, "backend": backend_part}))
        if tenant is not None:
            overall = rows[0]["components"]
        else:
            overall = {
                "wal_lag": _wal_lag(t, lag, None).body(),
                "replication_lag": _opt_body(_replication_lag(t, replication, None)),
                "outbox": _outbox(t, outbox, None).body(),
                "dead_letters": _plane_dead_letters(t, lag, set(self._dlqs)).body(),
                "backend": backend_part.body(),
            }
        return {
            "status": worst([Health(c["status"]) for c in overall.values() if c]).value,
            "scope": "tenant" if tenant is not None else "plane",
            "components": overall,
            "tenants": rows,
            "thresholds": {
                "wal_lag_s": [t.wal_lag_degraded_s, t.wal_lag_down_s],
                "replication_lag_s": [t.replication_lag_degraded_s, t.replication_lag_down_s],
                "outbox_pending": [t.outbox_degraded, t.outbox_down],
                "dead_letters_degraded": t.dead_letters_degraded,
            },
        }

    async def _open_dead_letters(self, tenant: str | None) -> tuple[dict[str, int], bool]:
        """Open dead letters per tenant from the index, and whether there may be more."""
        equals = {"status": "open", **({"tenant": tenant} if tenant is not None else {})}
        query = ScanQuery(order_by="failed_at", equals=equals, limit=MAX_PAGE)
        rows, cursor = await self.reader.scan(DLQ_PAGE, query)
        counts: dict[str, int] = {}
        for row in rows:
            owner = str(row.get("tenant") or "")
            counts[owner] = counts.get(owner, 0) + 1
        return counts, cursor is not None


async def _guard(call: Awaitable[Any], timeout_s: float) -> Any:
    """The call's answer, or the exception that stopped it (a timeout included)."""
    try:
        async with asyncio.timeout(timeout_s):
            return await call
    except Exception as exc:  # every failure of a source is reported, never raised
        return exc


def _row(tenant: str, parts: Mapping[str, Component | None]) -> dict[str, Any]:
    bodies = {name: _opt_body(part) for name, part in parts.items()}
    status = worst([part.status for part in parts.values() if part is not None])
    return {"tenant": tenant, "status": status.value, "components": bodies}


def _opt_body(part: Component | None) -> dict[str, Any] | None:
    return None if part is None else part.body()


def _tenants_seen(lag: Any, replication: Any, outbox: Any, dead: Any) -> set[str]:
    seen: set[str] = set()
    if isinstance(lag, LagReport):
        seen.update(row.tenant for row in lag.tenants if not row.tenant.startswith("("))
    if not isinstance(replication, BaseException) and replication is not None:
        for answer in replication[1]:
            seen.update(((answer or {}).get("lag") or {}).get("tenants") or {})
    if not isinstance(outbox, BaseException):
        seen.update(outbox.tenants)
    if not isinstance(dead, BaseException):
        seen.update(t for t in dead[0] if t)
    return seen


def _wal_lag(t: MemoryHealthThresholds, lag: Any, tenant: str | None) -> Component:
    if isinstance(lag, BaseException):
        return unknown(lag)
    report: LagReport = lag
    if tenant is None:
        rows = [(p.offsets.lag, p.seconds) for p in report.partitions]
    else:
        rows = [(r.offsets, r.seconds) for r in report.tenants if r.tenant == tenant]
    if any(seconds is None and offsets > 0 for offsets, seconds in rows):
        return Component(
            Health.UNKNOWN,
            {"offsets": sum(o for o, _ in rows)},
            "the oldest uncommitted record's timestamp could not be read in time",
        )
    seconds = max((s or 0.0 for _, s in rows), default=0.0)
    offsets = sum(o for o, _ in rows)
    return Component(
        classify_wal_lag(t, seconds), {"seconds": round(seconds, 3), "offsets": offsets}
    )


def _replication_lag(
    t: MemoryHealthThresholds, answers: Any, tenant: str | None
) -> Component | None:
    if isinstance(answers, BaseException):
        return unknown(answers)
    if answers is None:
        return None  # no replication flow ran against this plane
    state, bodies = answers
    if not bodies:
        return Component(Health.DOWN, error=f"no replication worker runs (group {state})")
    if any(body is None for body in bodies):
        missing = sum(body is None for body in bodies)
        return Component(Health.UNKNOWN, error=f"{missing} of {len(bodies)} workers unreachable")
    lags = [body.get("lag") or {} for body in bodies]
    if any(lag.get("status") == "unknown" for lag in lags):
        errors = "; ".join(str(lag.get("error")) for lag in lags if lag.get("error"))
        return Component(Health.UNKNOWN, error=errors or "replication lag not measured yet")
    if tenant is None:
        seconds = max(float(lag.get("seconds", 0.0)) for lag in lags)
        offsets = max(int(lag.get("offsets", 0)) for lag in lags)
    else:
        mine = [(lag.get("tenants") or {}).get(tenant) for lag in lags]
        found = [row for row in mine if row]
        seconds = max((float(row["seconds"]) for row in found), default=0.0)
        offsets = max((int(row["offsets"]) for row in found), default=0)
    return Component(
        classify_replication_lag(t, seconds), {"seconds": round(seconds, 3), "offsets": offsets}
    )


def _outbox(t: MemoryHealthThresholds, summary: Any, tenant: str | None) -> Component:
    if isinstance(summary, BaseException):
        return unknown(summary)
    backlogs = [b for name, b in summary.tenants.items() if tenant is None or name == tenant]
    pending = sum(b.pending for b in backlogs)
    oldest = min((b.oldest_parked_ms for b in backlogs), default=None)
    age = 0.0 if oldest is None else max(0, summary.at_ms - oldest) / 1000
    return Component(
        classify_outbox(t, pending),
        {"pending": pending, "oldest_age_s": round(age, 3), "modes": sorted(summary.modes)},
    )


def _plane_dead_letters(t: MemoryHealthThresholds, lag: Any, dlqs: set[str]) -> Component:
    if isinstance(lag, BaseException):
        return unknown(lag)
    report: LagReport = lag
    depths = {topic: marks.depth for topic, marks in report.topics.items() if topic in dlqs}
    depth = sum(depths.values())
    return Component(
        classify_dead_letters(t, depth),
        {"depth": depth, "topics": {k: v for k, v in sorted(depths.items()) if v}},
    )


def _tenant_dead_letters(t: MemoryHealthThresholds, dead: Any, tenant: str) -> Component:
    if isinstance(dead, BaseException):
        return unknown(dead)
    counts, more = dead
    depth = counts.get(tenant, 0)
    return Component(classify_dead_letters(t, depth), {"open": depth, "at_least": more})
