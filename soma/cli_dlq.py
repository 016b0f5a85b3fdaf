"""`soma dlq list|show|replay|ack`: the dead-letter operations from the shell.

The same operations as the gateway's admin API (state/dead_letters.py), acting as
`cli:<user>` over every tenant unless `--tenant` narrows it; every action is audited.
"""

from __future__ import annotations

import asyncio
import getpass
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer

dlq_app = typer.Typer(
    help="Dead letters: list, inspect, replay, acknowledge.", no_args_is_help=True
)

T = TypeVar("T")


def _run(work: Callable[[Any, Any], Awaitable[T]], tenant: str | None) -> T:
    """Run `work(service, scope)` with a dead-letter service for this shell."""
    from soma.settings import get_settings
    from state.dead_letters import DeadLetters, Scope
    from state.reads import StateReader
    from topics.producer import EventProducer

    async def main() -> T:
        settings = get_settings()
        reader = StateReader(settings)
        producer = EventProducer(settings)
        try:
            scope = Scope(tenant=tenant, actor=f"cli:{getpass.getuser()}")
            return await work(DeadLetters(settings, reader, producer), scope)
        finally:
            producer.close()
            await reader.aclose()

    from state.errors import StateError

    try:
        return asyncio.run(main())
    except StateError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@dlq_app.command("list")
def list_command(
    tenant: str | None = typer.Option(None, help="only this tenant's dead letters"),
    topic: str | None = typer.Option(None, help="source topic (registry name)"),
    reason: str | None = typer.Option(None, help="not_json, schema, no_key, ..."),
    status: str = typer.Option("open", help="open, acked, replayed, purged or all"),
    limit: int = typer.Option(50, min=1, max=200),
) -> None:
    """Dead letters, newest first (`id` is what show/replay/ack take)."""
    from processors.scan import ScanQuery
    from soma.settings import get_settings
    from topics.registry import TopicRegistry

    equals = {} if status == "all" else {"status": status}
    if topic:
        equals["source_topic"] = TopicRegistry(get_settings().topic_prefix).get(topic).name
    if reason:
        equals["reason"] = reason
    query = ScanQuery(order_by="failed_at", equals=equals, limit=limit)
    rows, cursor = _run(lambda service, scope: service.list_entries(scope, query), tenant)
    for row in rows:
        typer.echo(
            f"{row['failed_at']}  {row['status']:8} {row['tenant'] or '-':12} "
            f"{row['source_topic']:28} {row['reason']:16} {row['entry_id']}"
        )
    typer.echo(f"{len(rows)} dead letter(s)" + (" (more: narrow the filter)" if cursor else ""))


@dlq_app.command("show")
def show_command(
    entry_id: str = typer.Argument(..., help="the entry id `soma dlq list` printed"),
    tenant: str | None = typer.Option(None),
) -> None:
    """One dead letter: its index entry and full envelope, as JSON."""

    async def work(service: Any, scope: Any) -> dict[str, Any]:
        entry = await service.entry(scope, entry_id)
        return {**entry, "envelope": await service.envelope(entry)}

    typer.echo(json.dumps(_run(work, tenant), indent=2))


@dlq_app.command("replay")
def replay_command(
    entry_id: str = typer.Argument(...),
    tenant: str | None = typer.Option(None),
    force: bool = typer.Option(False, help="replay even if it was replayed already"),
) -> None:
    """Republish a dead letter's record to its source topic (refused, exit 1, if it would
    fail again or was replayed already)."""
    result = _run(lambda service, scope: service.replay(scope, entry_id, force=force), tenant)
    typer.echo(f"replayed {entry_id} {result.detail}")


@dlq_app.command("ack")
def ack_command(
    entry_id: str = typer.Argument(...),
    tenant: str | None = typer.Option(None),
    note: str | None = typer.Option(None, help="why (kept in the index)"),
) -> None:
    """Acknowledge a dead letter: it leaves the open list."""
    _run(lambda service, scope: service.ack(scope, entry_id, note), tenant)
    typer.echo(f"acknowledged {entry_id}")
