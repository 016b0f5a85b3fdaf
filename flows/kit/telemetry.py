"""What every flow reports beyond its batches: rebalances, owned partitions, event latency."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable
from typing import Any

import faust
from faust.types import TP

from soma import metrics


def count_rebalances(app: faust.App, flow: str, sources: Collection[str]) -> None:
    """Count every partition assignment the worker receives, and how many sources it owns.

    Faust's public `on_partitions_assigned` signal fires once per completed rebalance this
    member took part in; the assignment also holds changelog partitions, which are not counted.
    """

    async def on_assigned(sender: Any, assigned: set[TP], **kwargs: Any) -> None:
        metrics.FLOW_REBALANCES.labels(flow).inc()
        owned = [tp for tp in app.assignor.assigned_actives() if tp.topic in sources]
        metrics.FLOW_ASSIGNED_PARTITIONS.labels(flow).set(len(owned))

    app.on_partitions_assigned.connect(on_assigned)  # type: ignore[arg-type]
    metrics.FLOW_REBALANCES.labels(flow)  # 0 before the first assignment, not "no data"


def observe_latency(
    flow: str,
    stage: str,
    event_times_s: Iterable[float | None],
    clock: Callable[[], float] = time.time,
) -> None:
    """Event time -> now, for each event of a batch that reached `stage`."""
    now = clock()
    histogram = metrics.FLOW_EVENT_LATENCY_SECONDS.labels(flow, stage)
    for event_time in event_times_s:
        if event_time:  # a record without a timestamp says nothing about latency
            histogram.observe(max(0.0, now - event_time))
