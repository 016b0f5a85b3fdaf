"""Open the sink a replay writes through, after checking the target can take the source."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flows.errors import SourceTopicMissing
from flows.jobs.archive_files import ArchiveFile, file_schema, metadata
from flows.jobs.archive_sink import ArchiveWriter
from flows.jobs.memory_sink import BackendWriter
from flows.jobs.sinks import TopicWriter, Writer
from processors.replay import ReplayTally
from processors.tenant_counts import OffsetRange
from schemas import load_schema
from soma.settings import Settings
from topics.admin import partition_counts
from topics.registry import TopicRegistry

if TYPE_CHECKING:
    from flows.jobs.replay import ReplayRequest

MEMORY_SCHEMA = "memory_wal"  # only WAL records say what was stored, so only they re-store


def writer_for(
    settings: Settings,
    request: ReplayRequest,
    topic: str,
    schema_id: str,
    archive: ArchiveFile | None,
    ranges: tuple[OffsetRange, ...],
    tally: ReplayTally,
) -> tuple[Writer, str]:
    """(the sink partition, a description of the target) for records of `topic`."""
    registry = TopicRegistry(settings.topic_prefix)
    if request.target == "topic":
        target = registry.get(request.target_topic or topic)
        if target.schema != schema_id:
            raise ValueError(
                f"topic {target.name} takes {target.schema} events, the source holds {schema_id}"
            )
        if partition_counts(settings, [target.name])[target.name] is None:
            raise SourceTopicMissing(target.name)  # else every produce would time out, slowly
        topic_writer = TopicWriter(
            settings, target, request.job_id, tally, trust_schema_header=archive is None
        )
        return topic_writer, f"topic {target.name}"
    if request.target in ("backend", "replica"):
        if schema_id != MEMORY_SCHEMA:
            raise ValueError(f"only memory.wal records can be replayed into a {request.target}")
        from state.memory.factory import memory_backend
        from state.memory.replica import replica_backend

        opened = (
            memory_backend(settings) if request.target == "backend" else replica_backend(settings)
        )
        return BackendWriter(settings, opened, tally), f"{request.target} ({opened.name})"
    if request.target_file is None:
        raise ValueError("an archive target needs a file")
    json_schema = archive.json_schema if archive else load_schema(schema_id)
    mapping, avro_schema = file_schema(schema_id, json_schema)
    header = metadata(
        topic=topic,
        physical_topic=archive.physical_topic if archive else registry.get(topic).name,
        schema_id=schema_id,
        json_schema=json_schema,
        ranges=ranges,
        tenant=request.tenant,
        job_id=request.job_id,
    )
    writer = ArchiveWriter(
        request.target_file,
        avro_schema,
        mapping,
        header,
        tally,
        codec=request.codec,
    )
    return writer, f"archive {request.target_file}"
