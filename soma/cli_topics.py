"""`soma topics apply | list`: make the broker match the registry and show what is there."""

from __future__ import annotations

import typer

from processors.audit import SYSTEM_TENANT
from soma.cli_audit import cli_actor
from soma.settings import Settings, get_settings
from topics.admin import ApplyReport, apply_topics, high_watermarks
from topics.audit import emit_audit_sync
from topics.errors import BrokerUnavailable
from topics.registry import TopicRegistry

topics_app = typer.Typer(
    help="Create, verify and list the registered topics.", no_args_is_help=True
)


@topics_app.command("apply")
def apply() -> None:
    """Create missing topics; raise max.message.bytes where lower; report any other drift."""
    settings = get_settings()
    registry = TopicRegistry(settings.topic_prefix)
    try:
        report = apply_topics(settings, registry)
    except BrokerUnavailable as exc:
        typer.echo(f"error: {exc} (is the stack up? `soma stack up`)", err=True)
        raise typer.Exit(2) from None
    for name in report.created:
        typer.echo(f"created   {name}")
    for name, changes in report.altered.items():
        typer.echo(f"altered   {name}: {'; '.join(changes)}")
    typer.echo(f"unchanged {len(report.unchanged)} topic(s)")
    for name, differences in report.drift.items():
        typer.echo(f"DRIFT     {name}: {'; '.join(differences)}", err=True)
    _audit_apply(settings, report)
    if not report.ok:
        typer.echo("drift is reported, not fixed: decide and change it by hand", err=True)
        raise typer.Exit(1)


def _audit_apply(settings: Settings, report: ApplyReport) -> None:
    """Record the apply as an audit event of the `system` tenant; exit 1 if it cannot be."""
    try:
        emit_audit_sync(
            settings,
            cli_actor(),
            SYSTEM_TENANT,
            "topics.apply",
            f"topics:{settings.topic_prefix}*",
            "ok" if report.ok else "failed",
            details={
                "created": report.created[:100],
                "altered": dict(list(report.altered.items())[:100]),
                "drift": dict(list(report.drift.items())[:100]),
                "unchanged": len(report.unchanged),
            },
        )
    except Exception as exc:  # the apply is done; saying it went unaudited is what matters
        typer.echo(f"error: the apply was not audited: {exc}", err=True)
        raise typer.Exit(1) from None


@topics_app.command("list")
def list_topics() -> None:
    """Every registered topic with its partitions, policy and high watermarks."""
    settings = get_settings()
    registry = TopicRegistry(settings.topic_prefix)
    try:
        marks = high_watermarks(settings, [spec.name for spec in registry])
    except Exception as exc:  # the broker being down is the common reason; say so plainly
        typer.echo(f"error: cannot read watermarks: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{'topic':34} {'parts':>5} {'cleanup':14} {'key':24} {'schema':20} records")
    for spec in registry:
        partitions = marks.get(spec.name)
        total = "missing" if partitions is None else str(sum(partitions.values()))
        typer.echo(
            f"{spec.name:34} {spec.partitions:>5} {spec.cleanup_policy:14} "
            f"{spec.key_rule.value:24} {spec.schema:20} {total}"
        )
