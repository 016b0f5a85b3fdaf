"""`soma gateway serve` runs the HTTP edge; `soma token` mints a development bearer token."""

from __future__ import annotations

import typer

from soma.errors import ConfigError
from soma.settings import Settings, get_settings

gateway_app = typer.Typer(help="The FastAPI gateway (HTTP edge).", no_args_is_help=True)


@gateway_app.callback()
def gateway() -> None:
    """The FastAPI gateway (HTTP edge)."""
    # A callback keeps `serve` a subcommand even while it is the group's only command.


@gateway_app.command("serve")
def serve(
    host: str | None = typer.Option(None, help="bind address (default SOMA_GATEWAY_HOST)"),
    port: int | None = typer.Option(None, help="port (default SOMA_GATEWAY_PORT)"),
) -> None:
    """Serve the gateway with uvicorn until interrupted."""
    import uvicorn  # imported here so the other commands start fast

    from gateway.app import create_app

    try:
        settings = get_settings()
        settings.check_secrets()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    uvicorn.run(
        create_app(settings),
        host=host or settings.gateway_host,
        port=port or settings.gateway_port,
        # The gateway's own X-Request-Id / traceparent middleware identifies requests.
        server_header=False,
        # Let in-flight produce calls get their broker ack before the process exits.
        timeout_graceful_shutdown=int(settings.produce_timeout_s) + 5,
    )


def token(
    tenant_arg: str | None = typer.Argument(
        None, metavar="[TENANT]", help="tenant the token speaks for (or --tenant)"
    ),
    tenant_opt: str | None = typer.Option(
        None, "--tenant", help="tenant the token speaks for (same as the argument)"
    ),
    subject: str = typer.Option("dev", help="token subject (sub)"),
    admin: bool = typer.Option(False, "--admin", help="grant the admin role"),
    ttl: int = typer.Option(3600, help="lifetime in seconds (at most SOMA_JWT_MAX_TTL_S)"),
) -> None:
    """Print a bearer token signed with this install's key (development mode only)."""
    from gateway.auth import ADMIN_ROLE, issue_token

    if tenant_arg and tenant_opt and tenant_arg != tenant_opt:
        typer.echo("error: two different tenants given; name it once", err=True)
        raise typer.Exit(2)
    tenant = tenant_opt or tenant_arg
    if not tenant:
        typer.echo("error: which tenant? `soma token --tenant t1` (or `soma token t1`)", err=True)
        raise typer.Exit(2)
    settings = Settings()
    if settings.mode != "dev":
        # Production tokens come from the identity provider, never from a shell with the key.
        typer.echo("error: `soma token` only works with SOMA_MODE=dev", err=True)
        raise typer.Exit(2)
    roles = (ADMIN_ROLE,) if admin else ()
    try:
        settings.check_secrets()
        token_text = issue_token(settings, tenant, subject=subject, roles=roles, ttl_s=ttl)
    except (ConfigError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(token_text)
