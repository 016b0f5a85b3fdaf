"""`soma stack ...`: start, stop and inspect the local Kafka, Redis and PostgreSQL."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer

from infra.stack import (
    StackError,
    down,
    restart_kafka,
    start_kafka,
    status,
    stop_kafka,
    up,
)
from infra.stack.kafka_install import KAFKA_VERSION
from infra.stack.service import ServiceStatus
from soma.secrets import ensure_secret
from soma.settings import DEV_JWT_SECRET, Settings, get_settings

stack_app = typer.Typer(
    help=f"Local stack: Apache Kafka {KAFKA_VERSION} (KRaft), Redis, PostgreSQL and Prometheus, "
    "data in SOMA_STACK_DIR.",
    no_args_is_help=True,
)


@contextmanager
def _operator_errors() -> Iterator[Settings]:
    """Log progress to stderr; turn a StackError into its message and exit code 1."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per readiness probe
    try:
        yield get_settings()
    except StackError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _print(statuses: list[ServiceStatus]) -> None:
    for service in statuses:
        typer.echo(service.line())


def _timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


@stack_app.command("up")
def up_command() -> None:
    """Install what is missing and start every service; harmless when already up."""
    with _operator_errors() as settings:
        if settings.mode == "dev":
            # This install's own token signing key (owner-only, generated once): the gateway
            # and `soma token` use it when SOMA_JWT_KEYS is not set.
            ensure_secret(settings.stack_dir, DEV_JWT_SECRET)
        started = time.monotonic()
        statuses = up(settings)
        _print(statuses)
        typer.echo(f"stack up in {time.monotonic() - started:.1f} s")
        if any(service.state != "running" for service in statuses):
            raise StackError("some services are not running after `up`; see the lines above")


@stack_app.command("down")
def down_command() -> None:
    """Stop every service this stack started; harmless when already down."""
    with _operator_errors() as settings:
        stopped = down(settings)
        typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@stack_app.command("status")
def status_command() -> None:
    """One line per service. Exit code 1 when any service is not running."""
    with _operator_errors() as settings:
        statuses = status(settings)
        _print(statuses)
        if any(service.state != "running" for service in statuses):
            raise typer.Exit(1)


@stack_app.command("kafka-start")
def kafka_start_command() -> None:
    """Start Kafka alone and wait until it answers metadata."""
    with _operator_errors() as settings:
        seconds = _timed(lambda: start_kafka(settings))
        typer.echo(f"kafka answering on {settings.kafka_bootstrap} ({seconds:.1f} s)")


@stack_app.command("kafka-stop")
def kafka_stop_command() -> None:
    """Stop Kafka alone (Redis and PostgreSQL keep running)."""
    with _operator_errors() as settings:
        typer.echo("kafka stopped" if stop_kafka(settings) else "kafka was not running")


@stack_app.command("kafka-restart")
def kafka_restart_command() -> None:
    """Stop and start Kafka alone, waiting until it answers again."""
    with _operator_errors() as settings:
        seconds = _timed(lambda: restart_kafka(settings))
        typer.echo(f"kafka answering on {settings.kafka_bootstrap} ({seconds:.1f} s)")
