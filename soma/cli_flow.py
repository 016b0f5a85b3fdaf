"""CLI of the stream engines: `soma flow run NAME` (Faust) and `soma job run NAME` (Bytewax)."""

from __future__ import annotations

from pathlib import Path

import typer

flow_app = typer.Typer(help="Always-on Faust flows.", no_args_is_help=True)
job_app = typer.Typer(help="Bounded Bytewax jobs.", no_args_is_help=True)


@flow_app.callback()
def _flow() -> None:
    """Always-on Faust flows (one worker process per command)."""


@job_app.callback()
def _job() -> None:
    """Bounded Bytewax jobs (run to completion, then exit)."""


@flow_app.command("run")
def run_flow(
    name: str = typer.Argument(..., help="flow name, e.g. session-counts"),
    port: int | None = typer.Option(None, help="web port (default SOMA_WORKER_BASE_PORT)"),
    data_dir: Path | None = typer.Option(
        None, help="state directory (default <stack_dir>/flows/<app-id>/<port>)"
    ),
    app_id: str | None = typer.Option(None, help="consumer group / app id (default per flow)"),
    loglevel: str = typer.Option("info", help="log level"),
) -> None:
    """Run one worker of a flow in the foreground until SIGTERM/SIGINT."""
    from flows.catalog import flow_names
    from flows.errors import FlowError
    from flows.kit.worker import run_worker

    if name not in flow_names():
        raise typer.BadParameter(f"unknown flow {name!r}; known: {', '.join(flow_names())}")
    try:
        run_worker(name, port=port, data_dir=data_dir, app_id=app_id, loglevel=loglevel)
    except FlowError as exc:  # refused at start-up (missing topic, changelog drift)
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None


JOBS = ("tenant-counts",)


@job_app.command("run")
def run_job(
    name: str = typer.Argument(..., help="job name: tenant-counts"),
    source: str = typer.Option("conversation.inbound", help="registry topic to read"),
    target: str = typer.Option("analytics.session_counts", help="registry topic to write"),
    from_beginning: bool = typer.Option(
        True,
        "--from-beginning/--no-from-beginning",
        help="start at each partition's earliest record",
    ),
    start_offset: int | None = typer.Option(
        None, help="start at this offset per partition (wins over --from-beginning)"
    ),
    until_end: bool = typer.Option(
        True, "--until-end/--no-until-end", help="stop at the end offsets seen when the job starts"
    ),
    end_offset: int | None = typer.Option(None, help="stop before this offset per partition"),
    job_id: str | None = typer.Option(None, help="id written into every output record"),
) -> None:
    """Run a bounded job over a fixed offset range and print what it counted."""
    from flows.jobs.tenant_counts import describe
    from flows.jobs.tenant_counts import run_job as run_tenant_counts
    from soma.settings import get_settings

    if name not in JOBS:
        raise typer.BadParameter(f"unknown job {name!r}; known: {', '.join(JOBS)}")
    if not from_beginning and start_offset is None:
        raise typer.BadParameter("--no-from-beginning needs --start-offset")
    if not until_end and end_offset is None:
        raise typer.BadParameter("the job is bounded: --no-until-end needs --end-offset")
    report = run_tenant_counts(
        get_settings(),
        source=source,
        target=target,
        start_offset=start_offset,  # set wins over --from-beginning
        end_offset=None if until_end else end_offset,
        job_id=job_id,
    )
    for line in describe(report):
        typer.echo(line)


def _main() -> None:
    """`python -m soma.cli_flow flow run ...` until the lead wires these into `soma`."""
    root = typer.Typer(no_args_is_help=True)
    root.add_typer(flow_app, name="flow")
    root.add_typer(job_app, name="job")
    root()


if __name__ == "__main__":
    _main()
