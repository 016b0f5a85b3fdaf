"""Health classification: the worst component wins, except a memory service or Redis down alone."""

from __future__ import annotations

import pytest

from gateway.health import MEMORY_SERVICE, ComponentHealth, HealthReport, Status, overall_status

OK, DEGRADED, DOWN = Status.OK, Status.DEGRADED, Status.DOWN


def _components(**statuses: Status) -> dict[str, ComponentHealth]:
    return {name: ComponentHealth(status, 1.0) for name, status in statuses.items()}


@pytest.mark.parametrize(
    ("statuses", "overall"),
    [
        ({"kafka": OK, "redis": OK, "postgres": OK}, OK),
        ({"kafka": OK, "redis": DEGRADED, "postgres": OK}, DEGRADED),
        ({"kafka": DOWN, "redis": DEGRADED, "postgres": OK}, DOWN),
        ({"kafka": OK, "redis": OK, "postgres": DOWN}, DOWN),
        ({"kafka": OK, "redis": OK, "postgres": OK, MEMORY_SERVICE: DOWN}, DEGRADED),
        ({"kafka": OK, "redis": OK, "postgres": OK, MEMORY_SERVICE: DEGRADED}, DEGRADED),
        ({"kafka": DOWN, "redis": OK, "postgres": OK, MEMORY_SERVICE: DOWN}, DOWN),
        # Without Redis recalls are answered uncached: still serving.
        ({"kafka": OK, "redis": DOWN, "postgres": OK}, DEGRADED),
        ({"kafka": OK, "redis": DOWN, "postgres": DOWN}, DOWN),
    ],
)
def test_overall_status(statuses: dict[str, Status], overall: Status) -> None:
    assert overall_status(_components(**statuses)) is overall


def test_report_is_plain_json() -> None:
    report = HealthReport(DEGRADED, {"kafka": ComponentHealth(DEGRADED, 612.5, "slow: 612 ms")})
    assert report.as_dict() == {
        "status": "degraded",
        "components": {
            "kafka": {"status": "degraded", "latency_ms": 612.5, "error": "slow: 612 ms"}
        },
    }
