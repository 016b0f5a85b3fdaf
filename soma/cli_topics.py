"""`soma topics apply | list`: make the broker match the registry and show what is there."""

from __future__ import annotations

import typer

from soma.settings import get_settings
from topics.admin import apply_topics, high_watermarks
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
    if not report.ok:
        typer.echo("drift is reported, not fixed: decide and change it by hand", err=True)
        raise typer.Exit(1)


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
