"""`soma outbox status|flush`: the writes waiting for the memory service, from the drain's state.

`flush` is upstream's manual "somabrain-sync": every write parked so far (of one tenant, or
all) is tried now, whatever its backoff; it waits, with a progress bar, until they are gone or
`--timeout` passes, prints a summary, and is audited (`outbox.flush`).
"""

from __future__ import annotations

import asyncio
import getpass
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import typer

outbox_app = typer.Typer(
    help="The outbox: writes waiting for the memory service.", no_args_is_help=True
)

T = TypeVar("T")


def _with_reader(work: Callable[[Any], Awaitable[T]]) -> T:
    from soma.settings import get_settings
    from state.errors import StateError
    from state.reads import StateReader

    async def main() -> T:
        reader = StateReader(get_settings())
        try:
            return await work(reader)
        finally:
            await reader.aclose()

    try:
        return asyncio.run(main())
    except StateError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _pending(summary: Any, tenant: str | None) -> int:
    if tenant:
        backlog = summary.backlog(tenant)
        return backlog.pending if backlog else 0
    return sum(b.pending for b in summary.tenants.values())


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


@outbox_app.command("status")
def status_command(
    tenant: str | None = typer.Option(None, help="only this tenant"),
) -> None:
    """Backlog per tenant, oldest pending age, the drain's mode, next attempt."""
    from state.outbox import outbox_summary

    summary = _with_reader(outbox_summary)
    typer.echo(f"mode: {', '.join(sorted(summary.modes))}   partitions: {summary.partitions}")
    rows = [(t, b) for t, b in sorted(summary.tenants.items()) if tenant in (None, t)]
    if not rows:
        typer.echo("outbox empty" + (f" for {tenant}" if tenant else ""))
        return
    typer.echo(f"{'tenant':<24} {'pending':>8} {'oldest':>9} {'attempts':>8}  next attempt (UTC)")
    for name, backlog in rows:
        age = max(0, summary.at_ms - backlog.oldest_parked_ms) / 1000
        typer.echo(
            f"{name:<24} {backlog.pending:>8} {age:>8.1f}s {backlog.max_attempts:>8}  "
            f"{_time(backlog.next_attempt_ms)}"
        )


@outbox_app.command("flush")
def flush_command(
    tenant: str | None = typer.Option(None, help="only this tenant's writes"),
    timeout: float = typer.Option(300.0, help="give up waiting after this many seconds"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar"),
) -> None:
    """Try every parked write now, regardless of backoff; wait until the outbox is empty."""
    from processors.audit import Outcome
    from soma.settings import get_settings
    from state.outbox import outbox_summary, request_flush
    from topics.audit import emit_audit_sync

    settings = get_settings()
    started = time.monotonic()

    async def flush(reader: Any) -> tuple[int, int]:
        before = _pending(await outbox_summary(reader), tenant)
        await request_flush(reader, tenant)
        left = before
        bar = _bar() if progress and before else None
        task = bar.add_task("delivering", total=before) if bar else None
        if bar:
            bar.start()
        try:
            while left and time.monotonic() - started < timeout:
                await asyncio.sleep(0.5)
                left = _pending(await outbox_summary(reader), tenant)
                if bar is not None and task is not None:
                    bar.update(task, completed=max(0, before - left))
        finally:
            if bar:
                bar.stop()
        return before, left

    before, left = _with_reader(flush)
    elapsed = time.monotonic() - started
    outcome: Outcome = "ok" if left == 0 else "failed"
    try:
        emit_audit_sync(
            settings,
            f"cli:{getpass.getuser()}",
            tenant or "system",
            "outbox.flush",
            f"outbox/{tenant or '*'}",
            outcome,
            details={"pending_before": before, "pending_after": left},
        )
    except Exception as exc:  # the flush happened; say the audit did not
        typer.echo(f"warning: the flush was not audited: {exc}", err=True)
    typer.echo(
        f"flushed {before - left} of {before} waiting writes in {elapsed:.1f}s"
        + (
            f"; {left} still waiting (is the memory service up? `soma outbox status`)"
            if left
            else ""
        )
    )
    if left:
        raise typer.Exit(1)


def _bar() -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn())  # fmt: skip
