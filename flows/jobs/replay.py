"""Bounded Bytewax job: re-drive a topic range (by offset or time) or an archive into a target.

Targets: a registry topic (records re-produced with their keys through the murmur2 producer,
original headers plus `replay_of`/`replay_job`), the memory backend or the replica (memory.wal
records become memory writes, idempotent on the memory key), or an archive file (Avro). The
range is fixed when the job starts, so it ends while producers keep writing. Idempotent by
target: memory writes dedupe on the key; a replayed topic record keeps its key, event id and
idempotency key, which every consumer of the plane dedupes on.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main

from flows.jobs.archive_files import ArchiveFile, read_header
from flows.jobs.ranges import plan_ranges
from flows.jobs.sinks import ReplayFailed, once
from flows.jobs.sources import ArchiveSource, RangeSource, Record
from flows.jobs.targets import writer_for
from processors.replay import ReplayTally, TokenBucket, of_tenant
from processors.tenant_counts import OffsetRange
from soma.settings import Settings
from topics.registry import TopicRegistry

TARGETS = ("topic", "backend", "replica", "archive")


@dataclass(frozen=True)
class ReplayRequest:
    """What to replay, where to, and how fast. Exactly one of `topic` and `archive` is set."""

    target: str  # one of TARGETS
    topic: str | None = None  # registry name of the source topic
    archive: Path | None = None  # an archive file as the source
    target_topic: str | None = None  # target "topic": registry name (default: the source's)
    target_file: Path | None = None  # target "archive": the file to write
    from_offset: int | None = None
    to_offset: int | None = None  # exclusive
    from_time_ms: int | None = None
    to_time_ms: int | None = None  # exclusive
    partitions: tuple[int, ...] | None = None
    tenant: str | None = None
    rate: float = 0.0  # events per second; 0 = as fast as the target takes them
    codec: str = "deflate"
    job_id: str = field(default_factory=lambda: f"replay-{uuid.uuid4().hex[:12]}")


@dataclass
class ReplayReport:
    """What a replay read and wrote, and how fast."""

    job_id: str
    source: str
    target: str
    ranges: tuple[OffsetRange, ...]
    tally: ReplayTally
    elapsed_s: float = 0.0

    @property
    def events_per_s(self) -> float:
        return self.tally.read / self.elapsed_s if self.elapsed_s > 0 else 0.0


Progress = Callable[[ReplayTally], None]


def run_replay(
    settings: Settings, request: ReplayRequest, on_progress: Progress | None = None
) -> ReplayReport:
    """Plan, run the dataflow to completion in this process, return the report."""
    if request.target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, not {request.target!r}")
    if (request.topic is None) == (request.archive is None):
        raise ValueError("replay from a topic or from an archive file, not both or neither")
    registry = TopicRegistry(settings.topic_prefix)
    tally = ReplayTally()
    if request.topic is not None:
        spec = registry.get(request.topic)
        ranges = plan_ranges(
            settings,
            spec.name,
            from_offset=request.from_offset,
            to_offset=request.to_offset,
            from_time_ms=request.from_time_ms,
            to_time_ms=request.to_time_ms,
            partitions=request.partitions,
        )
        tally.planned = sum(r.to_offset - r.from_offset for r in ranges)
        source: ArchiveFile | None = None
        schema_id, logical, origin = spec.schema, request.topic, spec.name
        flow_source: RangeSource | ArchiveSource = RangeSource(settings, spec.name, ranges)
    else:
        assert request.archive is not None
        source = read_header(request.archive)
        ranges = source.ranges
        schema_id, logical, origin = source.schema_id, source.topic, str(request.archive)
        flow_source = ArchiveSource(request.archive, source.mapping, source.physical_topic)
    writer, target = writer_for(settings, request, logical, schema_id, source, ranges, tally)
    report = ReplayReport(request.job_id, origin, target, ranges, tally)
    flow = Dataflow("replay")
    records = op.input("read", flow, flow_source)
    kept = op.flat_map_batch("select", records, _selector(request, tally, on_progress))
    op.output("write", kept, once(writer))
    started = time.monotonic()
    try:
        if tally.planned != 0:
            run_main(flow)
    except Exception as exc:
        writer.abort()  # a failed export leaves no file that looks complete
        raise _cause(exc) from None
    finally:
        report.elapsed_s = time.monotonic() - started
    writer.close()  # idempotent: Bytewax closes sinks at the end of a finite run too
    return report


def _selector(
    request: ReplayRequest, tally: ReplayTally, on_progress: Progress | None
) -> Callable[[list[Record]], list[Record]]:
    bucket = TokenBucket(request.rate, burst=max(request.rate, 1.0), clock=time.monotonic)
    tenant = request.tenant
    # A topic source is read by offset ranges already planned from these; an archive is not.
    bounded = request.archive is not None and any(
        v is not None
        for v in (
            request.from_time_ms,
            request.to_time_ms,
            request.partitions,
            request.from_offset,
            request.to_offset,
        )
    )

    def select(batch: list[Record]) -> list[Record]:
        tally.read += len(batch)
        kept = batch
        if tenant is not None:
            kept = [r for r in kept if of_tenant(r.key(), tenant)]
        if bounded:
            kept = [r for r in kept if _in_bounds(request, r)]
        delay = bucket.take(len(kept))
        if delay > 0:
            time.sleep(delay)  # blocks the dataflow: the rate bounds what the target sees
        tally.selected += len(kept)
        if on_progress is not None:
            on_progress(tally)
        return kept

    return select


def _in_bounds(request: ReplayRequest, record: Record) -> bool:
    at, offset = record.timestamp()[1], record.offset() or 0
    return (
        (request.from_time_ms is None or at >= request.from_time_ms)
        and (request.to_time_ms is None or at < request.to_time_ms)
        and (request.partitions is None or record.partition() in request.partitions)
        and (request.from_offset is None or offset >= request.from_offset)
        and (request.to_offset is None or offset < request.to_offset)
    )


def _cause(exc: BaseException) -> BaseException:
    """The ReplayFailed (or other error) a Bytewax step raised, out of Bytewax's wrapping."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ReplayFailed):
            return seen
        seen = seen.__cause__ or seen.__context__
    return exc
