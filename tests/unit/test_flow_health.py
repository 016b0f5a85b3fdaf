"""A flow's health from its workers' answers, and what it does to the gateway's overall status."""

from __future__ import annotations

from gateway.health import MEMORY_SERVICE, ComponentHealth, Status, overall_status
from gateway.replication_health import REPLICATION
from state.flow_health import FlowHealth, combine


def answer(status: str, seconds: float, offsets: int) -> dict[str, object]:
    return {"status": status, "lag": {"seconds": seconds, "offsets": offsets}}


def test_a_flow_that_never_ran_has_no_health() -> None:
    assert combine("Dead", []) is None


def test_no_worker_or_an_unreachable_one_is_down() -> None:
    assert combine("Empty", []) == FlowHealth("down", "no worker running (group Empty)")
    found = combine("Stable", [answer("ok", 0, 0), None])
    assert found is not None and found.status == "down" and "1 of 2" in found.detail


def test_the_worst_worker_and_the_largest_lag_win() -> None:
    found = combine("Stable", [answer("ok", 0.5, 3), answer("degraded", 12.0, 900)])
    assert found == FlowHealth("degraded", "lag 12.0 s, 900 records; group Stable")
    rebalancing = combine("PreparingRebalance", [answer("ok", 0, 0)])
    assert rebalancing is not None and rebalancing.status == "degraded"


def test_replication_down_alone_degrades_the_gateway_but_keeps_it_in_rotation() -> None:
    def components(**statuses: Status) -> dict[str, ComponentHealth]:
        return {name: ComponentHealth(s, 1.0) for name, s in statuses.items()}

    ok = {"kafka": Status.OK, "redis": Status.OK, "postgres": Status.OK}
    assert overall_status(components(**ok, **{REPLICATION: Status.DOWN})) is Status.DEGRADED
    both = {REPLICATION: Status.DOWN, MEMORY_SERVICE: Status.DOWN}
    assert overall_status(components(**ok, **both)) is Status.DEGRADED
    assert overall_status(components(**{**ok, "kafka": Status.DOWN})) is Status.DOWN
