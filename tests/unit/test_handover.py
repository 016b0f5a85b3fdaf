"""Hand-over checks: outputs a partition's previous owner sent are not sent again, once."""

from __future__ import annotations

from collections.abc import Mapping

from flows.kit.handover import CLOCK_SKEW_MS, Handover
from flows.spec import Output
from processors.intake import Event
from processors.source_positions import NO_POSITIONS, SourcePositions
from soma.settings import Settings
from tests.support.write_events import as_event, memory_write

SETTINGS = Settings(topic_prefix="p.")
WAL = "memory.wal"


class Reads:
    """The output topics as a predecessor left them (the reader the worker would run)."""

    def __init__(self, sent: Mapping[str, set[str]]) -> None:
        self.sent = sent
        self.calls: list[tuple[list[str], int]] = []

    def __call__(self, _: Settings, topics: list[str], since_ms: int) -> Mapping[str, set[str]]:
        self.calls.append((topics, since_ms))
        return self.sent


def event(n: int, partition: int = 1, ts: int = 10_000_000) -> Event:
    value = memory_write("acme", "s1", n, idempotency_key=f"key-{n:04d}")
    return as_event("p.memory.requests", value, partition=partition, offset=n, timestamp_ms=ts)


def wal_output(cause: Event) -> Output:
    return Output(WAL, {"tenant": "acme", "idempotency_key": cause.value["idempotency_key"]}, cause)


async def test_a_stranger_partition_is_checked_once_for_one_batch_worth_of_outputs() -> None:
    reads = Reads({"p.memory.wal": {"acme/key-0001", "acme/key-0003"}})
    handover = Handover("wt", ("memory.wal", "memory.outbox"), window=3, read=reads)
    found = {1: SourcePositions({"p.memory.requests": 0}, written_at_ms=9_000_000)}
    first = [event(1), event(2)]
    outputs = [wal_output(e) for e in first]
    kept, checked = await handover.drop_sent(SETTINGS, outputs, found, first)
    assert [o.event["idempotency_key"] for o in kept] == ["key-0002"]
    assert checked == {1}
    # Read from the later of the positions' time and the events' time, less the clock skew.
    assert reads.calls == [(["p.memory.wal", "p.memory.outbox"], 10_000_000 - CLOCK_SKEW_MS)]
    written = {1: SourcePositions({"p.memory.requests": 2}, written_at_ms=10_500_000)}
    handover.finish(found, written, checked)

    # The next batch is ours: no new read, the open check still filters (3 outputs window).
    second = [event(3), event(4)]
    outputs = [wal_output(e) for e in second]
    kept, checked = await handover.drop_sent(SETTINGS, outputs, written, second)
    assert [o.event["idempotency_key"] for o in kept] == ["key-0004"] and checked == set()
    assert len(reads.calls) == 1 and handover.checks == {}  # the window is used up


async def test_partitions_this_process_finished_last_are_never_read() -> None:
    reads = Reads({})
    handover = Handover("wt", (WAL,), window=500, read=reads)
    ours = SourcePositions({"p.memory.requests": 5}, written_at_ms=1)
    handover.finished[1] = ours
    batch = [event(6)]
    kept, _ = await handover.drop_sent(SETTINGS, [wal_output(batch[0])], {1: ours}, batch)
    assert len(kept) == 1 and reads.calls == []


async def test_a_replay_only_batch_leaves_the_partition_a_stranger() -> None:
    handover = Handover("wt", (WAL,), window=500, read=Reads({}))
    handover.finish({2: NO_POSITIONS}, {2: SourcePositions({"t": 1}, 5)}, checked=set())
    assert handover.finished == {}  # still to be checked when its first output comes
