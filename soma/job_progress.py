"""Progress of a bounded job as a Prometheus textfile, which the always-on lag exporter serves.

A Bytewax job joins no consumer group, so no committed offset shows how far it got; and it
may end between two scrapes. It writes its own series (soma/metrics.py, JOB_REGISTRY) to
`<stack_dir>/metrics/jobs/<job>.prom`, atomically, at most every `every_s` and once at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client import write_to_textfile

from soma import metrics
from soma.settings import Settings


def job_metrics_dir(settings: Settings) -> Path:
    return settings.stack_dir / "metrics" / "jobs"


class JobProgress:
    """Tracks the offsets a job has read against its planned range and reports them."""

    def __init__(
        self,
        settings: Settings,
        job: str,
        topic: str,
        ranges: Iterable[tuple[int, int, int]],  # (partition, from_offset, to_offset)
        *,
        every_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.job, self.topic, self.every_s, self.clock = job, topic, every_s, clock
        self.path = job_metrics_dir(settings) / f"{job}.prom"
        self._ends = {p: end for p, _, end in ranges}
        self._next = {p: start for p, start, _ in ranges}  # next offset to read
        self._read = 0
        self._written_at = float("-inf")
        # The file holds the whole job registry: start it from this run alone (one job at a
        # time per process; a test process may run several in turn).
        for gauge in (
            metrics.JOB_LAG_OFFSETS,
            metrics.JOB_RECORDS_READ,
            metrics.JOB_RUNNING,
            metrics.JOB_LAST_UPDATE,
        ):
            gauge.clear()
        metrics.JOB_RUNNING.labels(job).set(1)
        self.write()

    def record(self, partition: int, offset: int) -> None:
        """One record of the range was read; report now and then."""
        if offset >= self._next.get(partition, offset + 1):
            self._next[partition] = offset + 1
            self._read += 1
        if self.clock() - self._written_at >= self.every_s:
            self.write()

    def finish(self) -> None:
        """The job ended: the range was read whole (a failed job never calls this)."""
        self._next = dict(self._ends)
        metrics.JOB_RUNNING.labels(self.job).set(0)
        self.write()

    def write(self) -> None:
        for partition, end in self._ends.items():
            left = max(0, end - self._next[partition])
            metrics.JOB_LAG_OFFSETS.labels(self.job, self.topic, str(partition)).set(left)
        metrics.JOB_RECORDS_READ.labels(self.job, self.topic).set(self._read)
        now = self.clock()
        metrics.JOB_LAST_UPDATE.labels(self.job).set(now)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(self.path), metrics.JOB_REGISTRY)  # temp file + rename
        self._written_at = now
