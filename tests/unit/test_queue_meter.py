"""soma_queue_* bookkeeping: depth now, the high-water mark since start, the bound."""

from __future__ import annotations

import uuid

from prometheus_client import REGISTRY

from soma.queues import QueueMeter


def _sample(metric: str, queue: str) -> float | None:
    return REGISTRY.get_sample_value(metric, {"queue": queue})


def test_counted_queue_keeps_its_high_water_mark() -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    meter = QueueMeter(name, capacity=5)
    assert _sample("soma_queue_capacity", name) == 5
    assert _sample("soma_queue_high_water", name) == 0  # exported before anything was queued

    meter.add(3)
    meter.remove(2)
    meter.add()
    assert meter.depth() == 2 and meter.high_water == 3
    assert _sample("soma_queue_depth", name) == 2  # read at scrape
    assert _sample("soma_queue_high_water", name) == 3


def test_read_queue_counts_what_the_owner_and_scrapes_saw() -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    depth = [4]
    meter = QueueMeter(name, capacity=10, depth=lambda: depth[0])
    meter.observe(7)
    assert _sample("soma_queue_depth", name) == 4
    depth[0] = 9
    assert _sample("soma_queue_depth", name) == 9  # a scrape samples the depth, too
    assert meter.high_water == 9 and _sample("soma_queue_high_water", name) == 9


def test_unexported_meter_counts_but_exports_nothing() -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    meter = QueueMeter(name, capacity=2, export=False)
    meter.add(2)
    assert meter.high_water == 2
    assert _sample("soma_queue_capacity", name) is None
    assert _sample("soma_queue_high_water", name) is None
