"""The context a flow handler gets: settings, resources, and the sources' partition count."""

from __future__ import annotations

from collections.abc import Sequence

from flows.kit.batches import FlowRuntime
from flows.spec import BatchResult, FlowContext, FlowSpec
from processors.intake import Event
from soma.settings import Settings
from tests.support.write_events import as_event


async def test_a_handler_sees_the_partition_count_of_its_sources() -> None:
    seen: list[tuple[int, object]] = []

    def handler(events: Sequence[Event], ctx: FlowContext) -> BatchResult:
        # Table keys must be co-partitioned with the events: a handler that derives keys of
        # its own (e.g. one per partition) needs the count murmur2 reduces by.
        seen.append((ctx.partitions, ctx.resources))
        return BatchResult()

    spec = FlowSpec(
        name="probe", app_id="probe", sources=("conversation.inbound",), handler=handler,
        description="test flow",
    )  # fmt: skip
    runtime = FlowRuntime(
        spec=spec,
        settings=Settings(),
        app_id="probe",
        partitions=12,
        tables={},
        owned=set,
        rebalancing=lambda: False,
        stale=lambda event: False,
        halt=lambda reason: None,
        resources="the backend",
    )
    event = as_event("conversation.inbound", {"tenant": "acme", "session_id": "s1"})
    assert await runtime._call([event], {}) == BatchResult()
    assert seen == [(12, "the backend")]


def test_workers_collect_garbage_less_often_and_freeze_their_start_up_heap() -> None:
    import gc

    from flows.kit.worker import GC_THRESHOLDS, tune_garbage_collector

    before = gc.get_threshold()
    try:
        tune_garbage_collector()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
