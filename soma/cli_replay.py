"""`soma replay`: re-drive a topic range or an archive into a topic, the backend or the replica.

Also what `soma/cli_archive.py` shares with it: the range options, running a job, its summary
and its audit event.
"""

from __future__ import annotations

from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from soma.cli_audit import cli_actor
from soma.settings import get_settings

if TYPE_CHECKING:
    from flows.jobs.replay import ReplayReport, ReplayRequest

FROM_OFFSET = typer.Option(None, help="first offset, per partition")
TO_OFFSET = typer.Option(None, help="stop before this offset, per partition")
FROM_TIME = typer.Option(None, help="first record at or after this time (ISO 8601, UTC if naive)")
TO_TIME = typer.Option(None, help="stop at the first record at or after this time")
PARTITION = typer.Option(None, "--partition", help="only these partitions (repeatable)")
TENANT = typer.Option(None, help="only records of this tenant")
PROGRESS = typer.Option(True, "--progress/--no-progress", help="show a progress bar")


def ms(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 time") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def replay_command(
    topic: str | None = typer.Argument(None, help="registry topic to re-drive, e.g. memory.wal"),
    to: str = typer.Option(..., "--to", help="topic | topic:NAME | backend | replica"),
    archive: Path | None = typer.Option(None, help="replay this archive file instead"),
    from_offset: int | None = FROM_OFFSET,
    to_offset: int | None = TO_OFFSET,
    from_time: str | None = FROM_TIME,
    to_time: str | None = TO_TIME,
    partition: list[int] | None = PARTITION,
    tenant: str | None = TENANT,
    rate: float = typer.Option(10_000, help="events per second at most; 0: no limit"),
    progress: bool = PROGRESS,
) -> None:
    """Re-drive a topic range (or an archive) into a topic, the memory backend or the replica.

    Idempotent: memory writes dedupe on their key; replayed records keep key, event id and
    idempotency key. Exit 1 when records were refused (listed), 2 when the replay failed.
    """
    from flows.jobs.replay import ReplayRequest

    target, _, target_topic = to.partition(":")
    if target not in ("topic", "backend", "replica"):
        raise typer.BadParameter("--to is topic, topic:NAME, backend or replica")
    request = ReplayRequest(
        target=target,
        topic=topic if archive is None else None,
        archive=archive,
        target_topic=target_topic or None,
        from_offset=from_offset,
        to_offset=to_offset,
        from_time_ms=ms(from_time),
        to_time_ms=ms(to_time),
        partitions=tuple(partition) if partition else None,
        tenant=tenant,
        rate=rate,
    )
    if (topic is None) == (archive is None):
        raise typer.BadParameter("give a source topic or --archive FILE (one of them)")
    run("replay.run", request, progress)


def run(action: str, request: ReplayRequest, progress: bool) -> None:
    from flows.jobs.replay import run_replay
    from soma.errors import SomaError

    settings = get_settings()
    bar = _bar() if progress else None
    task: Any = None

    def advance(tally: Any) -> None:
        nonlocal task
        if bar is None:
            return
        if task is None:
            task = bar.add_task(request.job_id, total=tally.planned)
        bar.update(task, completed=tally.read)

    outcome, details, report = "failed", {}, None
    try:
        with bar or nullcontext():
            report = run_replay(settings, request, on_progress=advance)
        outcome = "ok" if not report.tally.refused else "failed"
        details = _details(report)
    except (SomaError, ValueError, LookupError) as exc:  # ReplayFailed, a missing topic, ...
        details = {"error": str(exc)[:1000]}
        typer.echo(f"error: {exc}", err=True)
    finally:
        _audit(settings, action, request, outcome, details)
    if report is None:
        raise typer.Exit(2)
    _summary(report)
    if report.tally.refused:
        raise typer.Exit(1)


def _bar() -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
    )


def _details(report: ReplayReport) -> dict[str, Any]:
    tally = report.tally
    return {
        "job_id": report.job_id,
        "source": report.source,
        "target": report.target,
        "ranges": [r.to_dict() for r in report.ranges][:64],
        "read": tally.read,
        "written": tally.written,
        "present": tally.present,
        "refused": tally.refused,
        "seconds": round(report.elapsed_s, 3),
    }


def _summary(report: ReplayReport) -> None:
    tally = report.tally
    typer.echo(f"{report.job_id}: {report.source} -> {report.target}")
    typer.echo(
        f"  read {tally.read}, selected {tally.selected}, written {tally.written}"
        f" (already present {tally.present}), refused {tally.refused}"
        + (f", kept raw {tally.raw}" if tally.raw else "")
    )
    typer.echo(f"  {report.elapsed_s:.2f} s, {report.events_per_s:,.0f} events/s")
    for line in tally.refusals or []:
        typer.echo(f"  refused {line}")


def _audit(
    settings: Any, action: str, request: ReplayRequest, outcome: str, details: dict[str, Any]
) -> None:
    from processors.audit import SYSTEM_TENANT
    from topics.audit import emit_audit_sync

    source = request.topic or str(request.archive)
    target = request.target_topic or request.target_file or request.target
    try:
        emit_audit_sync(
            settings,
            cli_actor(),
            request.tenant or SYSTEM_TENANT,
            action,
            f"{source} -> {target}"[:1024],
            "ok" if outcome == "ok" else "failed",
            details=details,
        )
    except Exception as exc:  # the replay ran; say loudly that it went unaudited
        typer.echo(f"warning: the {action} was not audited: {exc}", err=True)


def register(app: typer.Typer) -> None:
    """Add `replay`, `archive` and `replica` to the `soma` command."""
    from soma.cli_archive import archive_app, replica_app

    app.command("replay")(replay_command)
    app.add_typer(archive_app, name="archive")
    app.add_typer(replica_app, name="replica")
