"""`soma db upgrade | status`: the memory schema on the main database and on the replica."""

from __future__ import annotations

import psycopg
import typer
from psycopg.conninfo import conninfo_to_dict

from soma.settings import Settings, get_settings
from state.memory.migrate import pending, upgrade

db_app = typer.Typer(help="Memory schema migrations (yoyo-migrations).", no_args_is_help=True)


def _targets(settings: Settings, replica: bool) -> list[tuple[str, str]]:
    targets = [("main", settings.postgres_dsn)]
    if replica:
        targets.append(("replica", settings.replica_postgres_dsn()))
    return targets


def _where(dsn: str) -> str:
    info = conninfo_to_dict(dsn)
    return f"{info.get('host', '')}:{info.get('port', '')}/{info.get('dbname', '')}"


@db_app.command("upgrade")
def upgrade_command(
    replica: bool = typer.Option(True, help="also migrate the replica (SOMA_REPLICA_DSN)"),
) -> None:
    """Apply pending migrations to the main database and the replica; harmless when current."""
    settings = get_settings()
    applied_by_role: dict[str, list[str]] = {}
    for role, dsn in _targets(settings, replica):
        try:
            report = upgrade(dsn)
        except psycopg.OperationalError as exc:
            typer.echo(f"error: {role} {_where(dsn)}: {exc} (is the stack up? `soma stack up`)")
            raise typer.Exit(2) from None
        applied_by_role[role] = list(report.applied)
        applied = ", ".join(report.applied) if report.applied else "nothing"
        typer.echo(
            f"{role:8} {_where(dsn):32} applied {applied}; {len(report.already)} already applied"
        )
    if any(applied_by_role.values()):
        _audit_upgrade(settings, applied_by_role)


def _audit_upgrade(settings: Settings, applied: dict[str, list[str]]) -> None:
    """A schema change is audited (`db.upgrade`, tenant `system`); a warning if it cannot be:
    the upgrade may rightly run before `soma topics apply` created the audit topic."""
    from processors.audit import SYSTEM_TENANT
    from soma.cli_audit import cli_actor
    from topics.audit import emit_audit_sync

    try:
        emit_audit_sync(
            settings,
            cli_actor(),
            SYSTEM_TENANT,
            "db.upgrade",
            "memory schema",
            "ok",
            details={"applied": applied},
        )
    except Exception as exc:
        typer.echo(f"warning: the upgrade was not audited: {exc}", err=True)


@db_app.command("status")
def status_command(
    replica: bool = typer.Option(True, help="also check the replica (SOMA_REPLICA_DSN)"),
) -> None:
    """Pending migrations per database; exit code 1 when any database is behind."""
    settings = get_settings()
    behind = False
    for role, dsn in _targets(settings, replica):
        todo = pending(dsn)
        behind |= bool(todo)
        state = f"pending: {', '.join(todo)}" if todo else "up to date"
        typer.echo(f"{role:8} {_where(dsn):32} {state}")
    if behind:
        raise typer.Exit(1)
