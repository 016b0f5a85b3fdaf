"""`soma archive export|import|show` and `soma replica compare`: archives and the replica."""

from __future__ import annotations

from pathlib import Path

import typer

from soma.cli_replay import (
    FROM_OFFSET,
    FROM_TIME,
    PARTITION,
    PROGRESS,
    TENANT,
    TO_OFFSET,
    TO_TIME,
    ms,
    run,
)
from soma.settings import get_settings

archive_app = typer.Typer(help="Topic ranges to Avro archive files and back.", no_args_is_help=True)
replica_app = typer.Typer(help="The replica database.", no_args_is_help=True)


@archive_app.command("export")
def export_command(
    topic: str = typer.Argument(..., help="registry topic, e.g. memory.wal"),
    file: Path = typer.Argument(..., help="the .avro file to write"),
    from_offset: int | None = FROM_OFFSET,
    to_offset: int | None = TO_OFFSET,
    from_time: str | None = FROM_TIME,
    to_time: str | None = TO_TIME,
    partition: list[int] | None = PARTITION,
    tenant: str | None = TENANT,
    codec: str = typer.Option("deflate", help="Avro codec: deflate or null"),
    progress: bool = PROGRESS,
) -> None:
    """Copy a topic range into an Avro object container file (values typed by the schema)."""
    from flows.jobs.replay import ReplayRequest

    request = ReplayRequest(
        target="archive",
        topic=topic,
        target_file=file,
        from_offset=from_offset,
        to_offset=to_offset,
        from_time_ms=ms(from_time),
        to_time_ms=ms(to_time),
        partitions=tuple(partition) if partition else None,
        tenant=tenant,
        codec=codec,
    )
    run("archive.export", request, progress)


@archive_app.command("import")
def import_command(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="an archive file"),
    topic: str | None = typer.Option(None, help="registry topic to write (default: the file's)"),
    tenant: str | None = TENANT,
    rate: float = typer.Option(0, help="events per second at most; 0: no limit"),
    progress: bool = PROGRESS,
) -> None:
    """Produce an archive's records back to a topic (keys, headers, murmur2 partitions)."""
    from flows.jobs.replay import ReplayRequest

    request = ReplayRequest(
        target="topic", archive=file, target_topic=topic, tenant=tenant, rate=rate
    )
    run("archive.import", request, progress)


@archive_app.command("show")
def show_command(file: Path = typer.Argument(..., exists=True, dir_okay=False)) -> None:
    """What an archive holds: topic, schema, ranges, tenant filter, export time."""
    from flows.jobs.archive_files import read_header

    header = read_header(file)
    typer.echo(f"topic     {header.topic} (read from {header.physical_topic})")
    typer.echo(f"schema    {header.schema_id} sha256 {header.schema_sha256[:16]}")
    typer.echo(f"tenant    {header.tenant or 'all'}")
    typer.echo(f"exported  {header.exported_at}")
    for r in header.ranges:
        typer.echo(f"partition {r.partition}: offsets {r.from_offset}..{r.to_offset}")


@replica_app.command("compare")
def compare_command(
    tenant: str = typer.Option(..., help="tenant to compare"),
    namespace: str | None = typer.Option(None, help="memory namespace (default SOMA_NAMESPACE)"),
    universe: str = typer.Option("default", help="memory universe"),
) -> None:
    """Compare primary and replica in one scope: keys and payload hashes. Exit 1 if they differ."""
    from processors.memory_keys import MemoryScope
    from state.memory.snapshot import compare, scope_digest

    settings = get_settings()
    scope = MemoryScope(tenant, namespace or settings.namespace, universe)
    primary = scope_digest(settings.postgres_dsn, scope)
    difference = compare(primary, scope_digest(settings.replica_postgres_dsn(), scope))
    typer.echo(
        f"{scope.prefix}: primary {len(primary)} memories; missing {len(difference.missing)}, "
        f"extra {len(difference.extra)}, changed {len(difference.changed)} in the replica"
    )
    for label, keys in (("missing", difference.missing), ("extra", difference.extra)):
        for key in keys[:20]:
            typer.echo(f"  {label:8} {key}")
    if not difference.equal:
        raise typer.Exit(1)
