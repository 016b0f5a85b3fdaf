"""Run one worker process of a registered flow in the foreground."""

from __future__ import annotations

from pathlib import Path

import faust

from flows.app import WorkerSpec, create_app
from flows.registry import load_flow
from soma.settings import Settings, get_settings


def prepare_worker(
    name: str,
    *,
    port: int | None = None,
    data_dir: Path | None = None,
    app_id: str | None = None,
    settings: Settings | None = None,
) -> tuple[faust.App, WorkerSpec]:
    """Build the app of flow `name` for one worker (nothing started yet)."""
    settings = settings or get_settings()
    flow = load_flow(name)
    spec = WorkerSpec(
        # A topic prefix isolates a whole stack, so it isolates its consumer groups too.
        app_id=app_id or f"{settings.topic_prefix}{flow.DEFAULT_APP_ID}",
        host=settings.worker_host,
        port=port or settings.worker_base_port,
        data_dir=data_dir,
    )
    app = create_app(settings, spec)
    flow.build(app, settings)
    return app, spec


def run_worker(
    name: str,
    *,
    port: int | None = None,
    data_dir: Path | None = None,
    app_id: str | None = None,
    loglevel: str = "info",
) -> None:
    """Start the worker and block until it is stopped (SIGTERM/SIGINT stop it cleanly)."""
    app, _ = prepare_worker(name, port=port, data_dir=data_dir, app_id=app_id)
    faust.Worker(app, loglevel=loglevel).execute_from_commandline()
