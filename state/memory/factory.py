"""Choose the memory backend from settings: SomaBrain when SOMA_BASE_URL is set, else Postgres."""

from __future__ import annotations

from processors.backend_policy import PROBE_DEFAULT, ProbePolicy
from soma.settings import Settings
from state.memory.backend import MemoryBackend
from state.memory.health import HealthMonitor
from state.memory.links import PostgresLinkStore
from state.memory.pg import make_pool
from state.memory.postgres import PostgresMemoryBackend
from state.memory.somabrain import SomaBrainClient


def _probe_policy(settings: Settings) -> ProbePolicy:
    timeout = settings.memory_probe_timeout_s
    return ProbePolicy(
        timeout_s=timeout, degraded_latency_s=min(PROBE_DEFAULT.degraded_latency_s, timeout)
    )


def memory_backend(settings: Settings) -> MemoryBackend:
    """The process's memory backend; make one per process and share it (it owns the pools).

    Nothing connects here: Postgres opens its pool on first use, SomaBrain's HTTP client
    connects per request, so a backend that is down shows up as BackendUnavailable on the
    first call (and `down` in `health()`), never as a crash at start-up.
    """
    if settings.base_url:
        # Links only: a small pool is plenty.
        pool = make_pool(settings.postgres_dsn, max_size=min(4, settings.memory_pool_max))
        return SomaBrainClient(
            settings.base_url,
            links=PostgresLinkStore(pool, owns_pool=True),
            token=settings.api_token.get_secret_value() if settings.api_token else None,
            timeout_s=settings.memory_timeout_s,
            monitor=HealthMonitor("somabrain", probe=_probe_policy(settings)),
        )
    return PostgresMemoryBackend(
        settings.postgres_dsn,
        pool_max=settings.memory_pool_max,
        monitor=HealthMonitor("postgres", probe=_probe_policy(settings)),
    )
