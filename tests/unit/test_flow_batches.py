"""The kit's batch logic without a broker: retries, poison isolation by halves, dead letters.

The handler and tables are plain Python stand-ins here; the same runtime runs on the real
broker in tests/integration/test_flow_dead_letters.py and the kill -9 fault tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from faust.types import TP

from flows.kit.batches import BatchAbandoned, FlowRuntime, TableOverlay, _Outcome
from flows.spec import BatchResult, FlowContext, FlowSpec, Rejected, TableSpec
from processors.dead_letters import DeadLetterReason, SourceRecord
from processors.intake import Event
from processors.partitioning import partition_for
from processors.policies import Backoff, RetryPolicy
from soma.errors import TransientError
from soma.settings import Settings

SOURCE = "conversation.inbound"
PARTITIONS = 6


def event(key: str, offset: int) -> Event:
    partition = partition_for(key.encode(), PARTITIONS)
    record = SourceRecord(SOURCE, partition, offset, key.encode(), b"{}", (), 0)
    return Event(record=record, key=key, tenant=key.split("/")[0], value={"n": offset})


class Handler:
    """Counts events per key into table `seen`; fails as told."""

    def __init__(self, poison: set[int] = frozenset(), transient: int = 0) -> None:  # type: ignore[assignment]
        self.poison, self.transient = poison, transient
        self.calls: list[list[int]] = []

    def __call__(self, events: Sequence[Event], ctx: FlowContext) -> BatchResult:
        self.calls.append([e.offset for e in events])
        if self.transient:
            self.transient -= 1
            raise TransientError("dependency down", retry_after_s=None)
        if any(e.offset in self.poison for e in events):
            raise ValueError("poison")
        seen = ctx.table("seen")
        writes: dict[str, int] = {}
        for e in events:
            writes[e.key] = writes.get(e.key, seen.get(e.key)) + 1
        return BatchResult(writes={"seen": writes})


def runtime(handler: Any, *, retry: RetryPolicy | None = None) -> tuple[FlowRuntime, list[float]]:
    spec = FlowSpec(
        name="test-flow",
        app_id="test",
        description="test",
        sources=(SOURCE,),
        handler=handler,
        tables=(TableSpec("seen", lambda v: {"n": v}, lambda d: int(d["n"]), 0),),
        retry=retry or RetryPolicy(Backoff(base_s=1.0, cap_s=8.0)),
    )
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    everything = {TP(SOURCE, p) for p in range(PARTITIONS)}
    rt = FlowRuntime(
        spec=spec,
        settings=Settings(),
        app_id="g",
        partitions=PARTITIONS,
        tables={"seen": {}},  # type: ignore[dict-item]
        owned=lambda: everything,
        rebalancing=lambda: False,
        stale=lambda event: False,
        halt=lambda reason: None,
        sleep=sleep,
        rand=lambda: 0.5,
    )
    return rt, slept


def run(rt: FlowRuntime, events: list[Event]) -> tuple[dict[str, Any], _Outcome]:
    overlays = {"seen": TableOverlay(lambda key: None, lambda d: int(d["n"]), 0)}
    outcome = _Outcome()
    asyncio.run(rt._run(events, overlays, outcome, attempts=0))
    return overlays["seen"].writes, outcome


KEYS = ["acme/a", "acme/b", "beta/c"]


def test_a_poison_record_is_isolated_by_halves_and_the_rest_is_kept_in_order() -> None:
    events = [event(KEYS[i % 3], i) for i in range(8)]
    handler = Handler(poison={5})
    writes, outcome = run(runtime(handler)[0], events)
    assert [(d.record.offset, d.reason) for d in outcome.dead] == [(5, DeadLetterReason.PROCESSING)]
    assert outcome.dead[0].attempts >= 1 and str(outcome.dead[0].error) == "poison"
    # Every other event counted once: later halves saw the earlier halves' writes.
    expected: dict[str, int] = {}
    for e in events:
        if e.offset != 5:
            expected[e.key] = expected.get(e.key, 0) + 1
    assert writes == expected
    # Halves, in order, down to the poison alone; a half without it runs whole.
    assert handler.calls == [
        [0, 1, 2, 3, 4, 5, 6, 7],
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [4, 5],
        [4],
        [5],
        [6, 7],
    ]


def test_transient_failures_are_retried_in_place_with_backoff() -> None:
    handler = Handler(transient=3)
    rt, slept = runtime(handler)
    writes, outcome = run(rt, [event("acme/a", 1), event("acme/a", 2)])
    assert writes == {"acme/a": 2} and not outcome.dead
    assert len(handler.calls) == 4
    assert slept == [0.5, 1.0, 2.0]  # full jitter at rand=0.5 of 1, 2, 4


def test_a_retry_after_hint_is_honoured_up_to_the_cap() -> None:
    class Throttled:
        calls = 0

        def __call__(self, events: Sequence[Event], ctx: FlowContext) -> BatchResult:
            self.calls += 1
            if self.calls < 3:
                raise TransientError("429", retry_after_s=[5.0, 600.0][self.calls - 1])
            return BatchResult()

    rt, slept = runtime(Throttled())
    run(rt, [event("acme/a", 1)])
    assert slept == [5.0, 8.0]


def test_retries_exhausted_dead_letter_the_batch_when_a_bound_is_set() -> None:
    rt, slept = runtime(Handler(transient=10), retry=RetryPolicy(Backoff(), max_attempts=2))
    _, outcome = run(rt, [event("acme/a", 1), event("acme/b", 2)])
    assert [(d.record.offset, d.reason, d.attempts) for d in outcome.dead] == [
        (1, DeadLetterReason.RETRIES_EXHAUSTED, 2),
        (2, DeadLetterReason.RETRIES_EXHAUSTED, 2),
    ]
    assert len(slept) == 1


def test_rejected_events_become_dead_letters_and_the_rest_is_kept() -> None:
    def handler(events: Sequence[Event], ctx: FlowContext) -> BatchResult:
        bad = [e for e in events if e.offset == 2]
        return BatchResult(
            writes={"seen": {e.key: 1 for e in events if e.offset != 2}},
            rejected=[Rejected(e, ValueError("backend says no")) for e in bad],
        )

    writes, outcome = run(runtime(handler)[0], [event("acme/a", 1), event("acme/b", 2)])
    assert writes == {"acme/a": 1}
    assert [(d.record.offset, d.reason) for d in outcome.dead] == [(2, DeadLetterReason.REJECTED)]


def test_a_write_off_the_batch_partitions_is_refused_as_not_co_partitioned() -> None:
    other = next(
        k
        for k in (f"acme/x{i}" for i in range(50))
        if partition_for(k.encode(), 6) != partition_for(b"acme/a", 6)
    )

    def handler(events: Sequence[Event], ctx: FlowContext) -> BatchResult:
        return BatchResult(writes={"seen": {other: 1}})

    writes, outcome = run(runtime(handler)[0], [event("acme/a", 1)])
    assert writes == {}
    assert outcome.dead[0].reason is DeadLetterReason.PROCESSING
    assert "not co-partitioned" in str(outcome.dead[0].error)


def test_a_batch_runs_during_a_rebalance_but_its_retries_do_not() -> None:
    handler = Handler()
    rt, _ = runtime(handler)
    rt.rebalancing = lambda: True
    writes, outcome = run(rt, [event("acme/a", 1)])
    assert handler.calls == [[1]] and writes == {"acme/a": 1} and not outcome.dead

    failing = Handler(transient=5)
    rt, slept = runtime(failing)
    rt.rebalancing = lambda: True
    with pytest.raises(BatchAbandoned):
        run(rt, [event("acme/a", 1)])
    assert len(failing.calls) == 1 and slept == [0.5]


def test_events_of_lost_partitions_are_not_run() -> None:
    handler = Handler()
    rt, _ = runtime(handler)
    kept = partition_for(b"acme/a", PARTITIONS)
    rt.owned = lambda: {TP(SOURCE, kept)}
    lost = next(k for k in KEYS if partition_for(k.encode(), PARTITIONS) != kept)
    writes, _ = run(rt, [event("acme/a", 1), event(lost, 2)])
    assert handler.calls == [[1]] and writes == {"acme/a": 1}


@pytest.mark.parametrize("bad", [0, 3, 6])
def test_isolation_finds_the_poison_wherever_it_sits(bad: int) -> None:
    events = [event(KEYS[i % 3], i) for i in range(7)]
    _, outcome = run(runtime(Handler(poison={bad}))[0], events)
    assert [d.record.offset for d in outcome.dead] == [bad]


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset
        self.tp = TP(topic, partition)
        self.acked = False
        self.generation_id = 1


class FakeEvent:
    def __init__(self, partition: int, offset: int, topic: str = SOURCE) -> None:
        self.message = FakeMessage(topic, partition, offset)


def guarded(earliest: int = 0, starts: dict[TP, int] | None = None) -> tuple[FlowRuntime, list]:
    rt, _ = runtime(Handler())
    sought: list[tuple[TP, int]] = []

    async def seek(tp: TP, offset: int) -> None:
        sought.append((tp, offset))

    async def first(tp: TP) -> int:
        return earliest

    rt.start_positions = lambda: (1, dict(starts or {TP(SOURCE, 0): 10}))
    rt.seek, rt.earliest_offset = seek, first
    return rt, sought


def offsets(rt: FlowRuntime, *delivered: int) -> list[int]:
    events = [FakeEvent(0, o) for o in delivered]
    return [e.message.offset for e in asyncio.run(rt._in_order(events))]  # type: ignore[arg-type]


def test_records_are_processed_in_order_from_where_the_partition_resumed() -> None:
    rt, sought = guarded()
    assert offsets(rt, 10, 11, 12) == [10, 11, 12]
    assert offsets(rt, 11, 12, 13) == [13]  # delivered again: processed already
    assert sought == []


def test_a_record_not_delivered_is_read_again_instead_of_skipped() -> None:
    rt, sought = guarded(earliest=0)
    assert offsets(rt, 10, 11, 15, 16) == [10, 11]  # 12..14 never arrived
    assert sought == [(TP(SOURCE, 0), 12)]
    assert offsets(rt, 17) == [] and len(sought) == 1  # in flight from before the seek
    assert offsets(rt, 12, 13, 14, 15) == [12, 13, 14, 15]


def test_records_gone_from_the_log_are_a_gap_to_accept() -> None:
    rt, sought = guarded(earliest=20)  # 10..19 expired before they were read
    assert offsets(rt, 20, 21) == [20, 21] and sought == []
    compacted, _ = runtime(Handler())
    compacted._compacted = {SOURCE}
    compacted.start_positions = lambda: (1, {TP(SOURCE, 0): 10})
    assert [e.message.offset for e in asyncio.run(compacted._in_order([FakeEvent(0, 14)]))] == [14]


def test_a_new_generation_starts_from_its_own_positions() -> None:
    rt, _ = guarded()
    assert offsets(rt, 10, 11) == [10, 11]
    rt.start_positions = lambda: (2, {TP(SOURCE, 0): 5})  # another worker committed up to 5
    assert offsets(rt, 5, 6) == [5, 6]
