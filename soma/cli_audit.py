"""`soma audit verify | list`: check a tenant's audit hash chain, read its latest events."""

from __future__ import annotations

import asyncio
import getpass
import socket

import orjson
import typer

from processors.audit_chain import Problem, verify
from soma.settings import get_settings

audit_app = typer.Typer(help="The audit trail: per-tenant hash chains.", no_args_is_help=True)


def cli_actor() -> str:
    """Who runs a CLI command, as audit events name them: `cli:user@host`."""
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"[:256]


@audit_app.command("verify")
def verify_command(tenant: str = typer.Option(..., help="tenant whose chain to check")) -> None:
    """Recompute the tenant's chain: exit 1 naming every changed, removed or reordered link."""
    from state.audit.queries import StoredChain, read_chain
    from state.audit.store import audit_connection

    async def read() -> StoredChain:
        async with audit_connection(get_settings().postgres_dsn) as conn:
            return await read_chain(conn, tenant)

    chain = asyncio.run(read())
    findings = verify(chain.links, chain.head)
    for seq in chain.inconsistent:
        typer.echo(f"changed    seq {seq}: its query columns differ from the hashed event")
    for finding in findings:
        event = f" event {finding.event_id}" if finding.event_id else ""
        typer.echo(f"{finding.problem.value:10} seq {finding.seq}{event}: {finding.detail}")
    if findings or chain.inconsistent:
        kinds = {f.problem.value for f in findings}
        if chain.inconsistent:
            kinds.add(Problem.CHANGED.value)
        typer.echo(f"FAILED: tenant {tenant}: {', '.join(sorted(kinds))}", err=True)
        raise typer.Exit(1)
    head = chain.head
    typer.echo(
        f"ok: tenant {tenant}: {len(chain.links)} links, head seq {head.seq if head else 0} "
        f"{head.hash[:16] if head else '-'}"
    )


@audit_app.command("list")
def list_command(
    tenant: str = typer.Option(..., help="tenant whose events to show"),
    action: str | None = typer.Option(None, help="only this action, e.g. topics.apply"),
    limit: int = typer.Option(20, min=1, max=1000, help="newest first, at most this many"),
) -> None:
    """The tenant's latest audit events, newest first, one JSON object per line."""
    from state.audit.queries import AuditFilter, read_page
    from state.audit.store import audit_connection

    async def read() -> list[dict[str, object]]:
        async with audit_connection(get_settings().postgres_dsn) as conn:
            rows, _ = await read_page(
                conn, tenant, AuditFilter(action=action), limit=limit, descending=True
            )
            return rows

    for row in asyncio.run(read()):
        typer.echo(orjson.dumps(row).decode())
