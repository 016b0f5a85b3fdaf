"""The outbox drain's state as the gateway and the CLI read it: backlog per tenant, and flushes.

Answered by the drain's workers from their in-memory summaries of the outbox table
(flows/outbox_drain.py); nothing here keeps a second copy of the truth.
"""

from __future__ import annotations

from dataclasses import dataclass

from processors.outbox import TenantBacklog
from soma.settings import Settings
from state.errors import StateUnavailable
from state.reads import StateReader

FLOW_APP_ID, SOURCE = "soma-outbox-drain", "memory.outbox"


@dataclass(frozen=True)
class OutboxSummary:
    """The whole outbox: backlog per tenant, what each tenant had delivered, the drain's mode."""

    tenants: dict[str, TenantBacklog]
    delivered: dict[str, int]  # cumulative per worker process, summed
    modes: set[str]
    partitions: int
    at_ms: int

    def backlog(self, tenant: str) -> TenantBacklog | None:
        return self.tenants.get(tenant)


def drain_group(settings: Settings) -> str:
    return f"{settings.topic_prefix}{FLOW_APP_ID}"


async def outbox_summary(reader: StateReader) -> OutboxSummary:
    """Every drain worker's summary, merged; StateUnavailable when a partition has no ready
    owner (a backlog that silently misses a partition would look smaller than it is)."""
    settings = reader.settings
    topic = f"{settings.topic_prefix}{SOURCE}"
    bodies = await reader.ask_owners(drain_group(settings), topic, "/outbox/summary")
    partitions = await reader.locator.partitions(topic)
    covered: set[int] = set()
    tenants: dict[str, TenantBacklog] = {}
    delivered: dict[str, int] = {}
    modes: set[str] = set()
    at_ms = 0
    for body in bodies:
        covered.update(body["partitions"])
        modes.add(str(body["mode"]))
        at_ms = max(at_ms, int(body["now_ms"]))
        for tenant, count in body["delivered"].items():
            delivered[tenant] = delivered.get(tenant, 0) + int(count)
        for tenant, row in body["tenants"].items():
            found = TenantBacklog(
                int(row["pending"]),
                int(row["oldest_parked_ms"]),
                int(row["next_attempt_ms"]),
                int(row["max_attempts"]),
            )
            tenants[tenant] = found.merged(tenants.get(tenant))
    if covered != set(range(partitions)):
        reader.locator.forget(drain_group(settings))
        missing = sorted(set(range(partitions)) - covered)
        raise StateUnavailable(
            f"outbox partitions {missing} have no ready owner", reason="moved", retry_after_s=1
        )
    return OutboxSummary(tenants, delivered, modes, partitions, at_ms)


async def request_flush(reader: StateReader, tenant: str | None) -> int:
    """Ask every drain worker to make the rows parked so far due now; returns how many asked."""
    settings = reader.settings
    topic = f"{settings.topic_prefix}{SOURCE}"
    params = {"tenant": tenant} if tenant else {}
    bodies = await reader.ask_owners(
        drain_group(settings), topic, "/outbox/flush", params, post=True
    )
    return len(bodies)
