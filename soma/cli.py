"""The `soma` command: stack, topics, gateway, flows, jobs and the whole plane."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import httpx
import typer

from soma import plane
from soma.cli_audit import audit_app
from soma.cli_db import db_app
from soma.cli_dlq import dlq_app
from soma.cli_flow import flow_app, job_app
from soma.cli_gateway import gateway_app, token
from soma.cli_outbox import outbox_app
from soma.cli_replay import register as register_replay
from soma.cli_stack import stack_app
from soma.cli_topics import topics_app
from soma.halts import read_halted
from soma.plane_status import describe, format_uptime
from soma.settings import Settings, get_settings
from soma.supervise import Supervisor, SupervisorError

app = typer.Typer(help="SomaStream: the streaming memory and event plane.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(topics_app, name="topics")
app.add_typer(db_app, name="db")
app.add_typer(gateway_app, name="gateway")
app.add_typer(flow_app, name="flow")
app.add_typer(job_app, name="job")
app.add_typer(dlq_app, name="dlq")
app.add_typer(audit_app, name="audit")
app.add_typer(outbox_app, name="outbox")
app.command("token")(token)
register_replay(app)

plane_app = typer.Typer(
    help="What the plane runs, derived from the flow specs.", no_args_is_help=True
)
app.add_typer(plane_app, name="plane")


@plane_app.command("processes")
def plane_processes_command() -> None:
    """Every process `soma up` runs, with its command and scrape target."""
    for process in plane.plane_processes(get_settings()):
        typer.echo(f"{process.name:26} {process.metrics_url:40} {' '.join(process.args[1:])}")


@plane_app.command("prometheus-config")
def prometheus_config_command(
    rule_file: list[str] = typer.Option([], help="alert rule files to load"),
) -> None:
    """Print a Prometheus configuration scraping the gateway and every flow worker."""
    typer.echo(plane.prometheus_config(get_settings(), rule_files=tuple(rule_file)), nl=False)


@plane_app.command("alert-rules")
def alert_rules_command() -> None:
    """Print the alert rules (infra/prometheus/alerts.yml) generated from soma/alerts.py."""
    from soma.alerts import render_rules

    typer.echo(render_rules(), nl=False)


@plane_app.command("metrics-table")
def metrics_table_command() -> None:
    """Print the docs' table of every metric (docs/observability.md)."""
    from soma.metrics_doc import metrics_table_markdown

    typer.echo(metrics_table_markdown(), nl=False)


@plane_app.command("dashboards")
def dashboards_command() -> None:
    """Write the Grafana dashboards (dashboards/*.json) generated from soma/dashboards.py."""
    from soma.dashboards import write_all

    for path in write_all():
        typer.echo(f"wrote {path}")


@app.command("lag-exporter")
def lag_exporter_command(
    port: int | None = typer.Option(None, help="port (default SOMA_LAG_EXPORTER_PORT)"),
) -> None:
    """Run the lag exporter in the foreground: every plane group's lag on /metrics."""
    from soma.lag_exporter import serve

    serve(get_settings(), port)


@plane_app.command("flow-table")
def flow_table_command() -> None:
    """Print the docs' table of flows (docs/flows.md)."""
    from flows.catalog import flow_table_markdown

    typer.echo(flow_table_markdown(), nl=False)


def _wait_http(url: str, timeout_s: float, ok: Callable[[int], bool]) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if ok(httpx.get(url, timeout=1.0).status_code):
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


@app.command("up")
def up(wait: float = typer.Option(90.0, help="seconds to wait for each process")) -> None:
    """Run the gateway and every flow under supervisord (the stack must be up)."""
    settings = get_settings()
    processes = plane.plane_processes(settings)
    _stop_legacy(settings)
    try:
        Supervisor(settings).up(processes)
    except SupervisorError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    failed = False
    for process in processes:
        # A worker is ready once it holds its partitions with tables restored; the gateway
        # once it answers at all.
        ready = _wait_http(
            process.ready_url, wait, (lambda c: c == 200) if process.flow else (lambda c: c < 500)
        )
        failed |= not ready
        log = settings.stack_dir / "logs" / f"{process.name}.log"
        state = "ready" if ready else "NOT READY (see its log)"
        typer.echo(f"{process.name:26} {state:24} {process.ready_url}  log={log}")
    _refresh_prometheus(settings)
    _print_status(settings, processes)
    if failed:
        raise typer.Exit(1)


@app.command("down")
def down() -> None:
    """Stop the gateway, the flows and their supervisor (the stack keeps running)."""
    settings = get_settings()
    stopped = Supervisor(settings).down()
    typer.echo("plane stopped" if stopped else "plane was not running")


@app.command("status")
def status() -> None:
    """Every plane process: state, pid, uptime, restarts, last exit code."""
    settings = get_settings()
    _print_status(settings, plane.plane_processes(settings))


def _refresh_prometheus(settings: Settings) -> None:
    """Point the stack's Prometheus at exactly the processes this `up` runs."""
    from infra.stack.errors import StackError
    from infra.stack.prometheus import reload_prometheus

    try:
        if reload_prometheus(settings):
            typer.echo("prometheus: scrape targets updated")
    except (StackError, httpx.HTTPError) as exc:
        typer.echo(f"warning: prometheus not updated: {exc}", err=True)


def _prometheus_line(settings: Settings) -> str:
    from infra.stack.prometheus import prometheus_pid, prometheus_url, targets_up

    url = prometheus_url(settings)
    if prometheus_pid(settings) is None:
        return f"prometheus: not running (expected at {url}; start it with `soma stack up`)"
    counts = targets_up(settings)
    up = "?" if counts is None else f"{counts[0]}/{counts[1]}"
    return f"prometheus: {url}  (targets up {up}; alerts at {url}/alerts)"


def _print_status(settings: Settings, processes: list[plane.PlaneProcess]) -> None:
    supervisor = Supervisor(settings)
    infos = supervisor.process_info()
    exits = supervisor.last_exits()
    if not infos:
        typer.echo("supervisor not running: start the plane with `soma up` (or `make up`)")
    typer.echo(
        f"{'process':26} {'state':11} {'pid':>7} {'uptime':>7} {'restarts':>8} {'last exit':>9}"
    )
    for process in processes:
        halted = None
        if process.app_id is not None and process.port is not None:
            found = read_halted(settings.stack_dir, process.app_id, process.port)
            halted = str(found["reason"]) if found else None
        line = describe(
            process.name,
            infos.get(process.name),
            starts=supervisor.starts(process.name),
            last_exit=exits.get(process.name),
            halted_reason=halted,
        )
        exit_code = line.last_exit or "-"
        typer.echo(
            f"{line.name:26} {line.state:11} {line.pid or '-':>7} "
            f"{format_uptime(line.uptime_s):>7} {line.restarts:>8} {exit_code:>9}"
            + (f"  {line.detail}" if line.detail else "")
        )
    typer.echo(_prometheus_line(settings))


def _stop_legacy(settings: Settings) -> None:
    """Stop processes a pre-supervisor `soma up` left running (pidfiles in run/)."""
    for pidfile in (settings.stack_dir / "run").glob("*.pid"):
        if pidfile.name == "supervisord.pid":
            continue
        try:
            pid = int(pidfile.read_text().strip())
            os.killpg(pid, signal.SIGTERM)
            typer.echo(f"stopped {pidfile.stem} (pid {pid}) started before the supervisor")
        except (ValueError, ProcessLookupError, PermissionError):
            pass
        pidfile.unlink(missing_ok=True)


if __name__ == "__main__":
    app()
