"""The overview page's lag reads (gateway/lag_watch.py): shared, rate-limited, a bounded history."""

from __future__ import annotations

from gateway.lag_watch import LagPoint, LagWatch, lag_points
from processors.lag import PartitionOffsets
from state.lag import LagReport, PartitionLag
from topics.errors import BrokerUnavailable


def report(at_ms: int, *lags: tuple[int, int, float | None]) -> LagReport:
    """Partitions of group g on topic t: (partition, lag, seconds)."""
    rows = [
        PartitionLag("g", "f", PartitionOffsets("t", p, 0, lag, 0), seconds)
        for p, lag, seconds in lags
    ]
    return LagReport(taken_at_ms=at_ms, partitions=rows)


def test_points_sum_partitions_and_keep_the_longest_wait() -> None:
    points = lag_points(report(1000, (0, 3, 2.5), (1, 4, None), (2, 0, 0.0)))
    assert points == {("g", "t"): LagPoint(1000, 7, 2.5)}
    assert lag_points(report(1, (0, 3, None)))[("g", "t")].seconds is None


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_reads_are_shared_within_the_interval_and_the_history_is_bounded() -> None:
    clock, reads = Clock(), []

    def read() -> LagReport:
        reads.append(clock.now)
        return report(len(reads), (0, len(reads), 1.0))

    watch = LagWatch(read, min_interval_s=2.0, capacity=3, clock=clock)
    first = await watch.view()
    again = await watch.view()  # within the interval: no second read
    assert len(reads) == 1 and again.history == first.history
    for _ in range(4):
        clock.now += 2.0
        view = await watch.view()
    assert len(reads) == 5
    assert [p.offsets for p in view.history[("g", "t")]] == [3, 4, 5]  # the last 3 only
    assert view.report is not None and view.error is None


async def test_a_failed_read_keeps_the_last_values_and_says_why() -> None:
    clock, answers = Clock(), [report(1, (0, 9, 4.0))]

    def read() -> LagReport:
        if not answers:
            raise BrokerUnavailable("cannot read cluster metadata")
        return answers.pop()

    watch = LagWatch(read, clock=clock)
    await watch.view()
    clock.now += 5
    view = await watch.view()
    assert view.error == "BrokerUnavailable: cannot read cluster metadata"
    assert view.report is not None and view.report.partitions[0].offsets.lag == 9
    assert len(view.history[("g", "t")]) == 1
