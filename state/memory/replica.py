"""The replica the replication flow writes to: Postgres at the replica DSN, or a SomaBrain."""

from __future__ import annotations

from soma.settings import Settings
from state.memory.backend import MemoryBackend
from state.memory.health import HealthMonitor
from state.memory.links import PostgresLinkStore
from state.memory.pg import make_pool
from state.memory.postgres import PostgresMemoryBackend
from state.memory.somabrain import SomaBrainClient


def replica_backend(settings: Settings) -> MemoryBackend:
    """The replica's backend: the same classes as the primary, pointed elsewhere.

    SOMA_REPLICA_BASE_URL set: a second SomaBrain through the same client (its links, which
    the service cannot keep, go to the replica database). Otherwise the Postgres backend on
    the replica database (`Settings.replica_postgres_dsn`). Nothing connects here.
    """
    dsn = settings.replica_postgres_dsn()
    if settings.replica_base_url:
        token = settings.replica_api_token
        return SomaBrainClient(
            settings.replica_base_url,
            links=PostgresLinkStore(make_pool(dsn, max_size=4), owns_pool=True),
            token=token.get_secret_value() if token else None,
            timeout_s=settings.memory_timeout_s,
            monitor=HealthMonitor("somabrain-replica"),
        )
    return PostgresMemoryBackend(
        dsn, pool_max=settings.memory_pool_max, monitor=HealthMonitor("postgres-replica")
    )
