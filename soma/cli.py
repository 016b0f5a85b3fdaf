"""The `soma` command: stack, topics, gateway, flows, jobs and the whole plane."""

from __future__ import annotations

import time

import httpx
import typer

from soma import plane
from soma.cli_db import db_app
from soma.cli_flow import flow_app, job_app
from soma.cli_gateway import gateway_app, token
from soma.cli_stack import stack_app
from soma.cli_topics import topics_app
from soma.settings import get_settings

app = typer.Typer(help="SomaStream: the streaming memory and event plane.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(topics_app, name="topics")
app.add_typer(db_app, name="db")
app.add_typer(gateway_app, name="gateway")
app.add_typer(flow_app, name="flow")
app.add_typer(job_app, name="job")
app.command("token")(token)


def _wait_http(url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


@app.command("up")
def up(wait: float = typer.Option(90.0, help="seconds to wait for each process")) -> None:
    """Start the gateway and every flow in the background (the stack must be up)."""
    settings = get_settings()
    failed = False
    for process in plane.plane_processes(settings):
        pid, started = plane.start(settings, process)
        ready = _wait_http(process.url, wait)
        state = "started" if started else "already running"
        health = "ready" if ready else "NOT READY (see logs)"
        failed |= not ready
        log = settings.stack_dir / "logs" / f"{process.name}.log"
        typer.echo(
            f"{process.name:22} {state:16} pid={pid:<7} {health:10} {process.url}  log={log}"
        )
    if failed:
        raise typer.Exit(1)


@app.command("down")
def down() -> None:
    """Stop the gateway and the flows (the stack keeps running: `soma stack down`)."""
    settings = get_settings()
    for process in reversed(plane.plane_processes(settings)):
        stopped = plane.stop(settings, process.name)
        typer.echo(f"{process.name:22} {'stopped' if stopped else 'was not running'}")


@app.command("status")
def status() -> None:
    """What of the plane runs, and where."""
    settings = get_settings()
    for process in plane.plane_processes(settings):
        pid = plane.running_pid(settings, process.name)
        state = f"running pid={pid}" if pid else "stopped"
        typer.echo(f"{process.name:22} {state:20} {process.url}")


if __name__ == "__main__":
    app()
