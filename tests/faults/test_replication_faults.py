"""Replication under faults: the replica database unavailable for a while, the worker killed
with kill -9 mid-stream; afterwards the replica equals the primary (keys and payload hashes)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from processors.replication import replica_write
from soma.settings import Settings
from state.memory.postgres import PostgresMemoryBackend
from state.memory.snapshot import compare, scope_digest
from tests.support.flows import (
    WorkerProcess,
    create_topics,
    delete_test_topics,
    isolated_settings,
    read_topic,
    wait_committed,
    wait_until,
)
from tests.support.processes import free_port
from tests.support.wal import WalProducer, scopes, wal_event

pytestmark = pytest.mark.fault

TENANTS = 4
EVENTS = 4000  # spread over ~20 s
CHUNK, PAUSE_S = 50, 0.25


def replica_accepts_connections(settings: Settings, allowed: bool) -> None:
    """Make the replica database unavailable (or available again) without touching the primary.

    The replica is a database of the same cluster: refusing new connections and ending the open
    ones is what a replica outage looks like to the flow (connection refused / reset), while
    the primary, Kafka and the cluster keep running. The role owns the database, so it may.
    """
    dbname = conninfo_to_dict(settings.replica_postgres_dsn())["dbname"]
    with psycopg.connect(settings.postgres_dsn, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{dbname}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (dbname,),
            )


class Feeder(threading.Thread):
    """The write path at a steady pace: each chunk stored in the primary, then its WAL records."""

    def __init__(self, settings: Settings, tenants: list[str]) -> None:
        super().__init__(daemon=True)
        self.settings, self.tenants = settings, tenants
        self.sent = 0
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._feed())
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()

    async def _feed(self) -> None:
        producer = WalProducer(self.settings)
        async with PostgresMemoryBackend(self.settings.postgres_dsn) as primary:
            for start in range(0, EVENTS, CHUNK):
                chunk = [
                    wal_event(self.tenants[n % len(self.tenants)], n)
                    for n in range(start, min(start + CHUNK, EVENTS))
                ]
                ns = self.settings.namespace
                await primary.remember_batch(
                    [replica_write(e, default_namespace=ns) for e in chunk]
                )
                producer.send(chunk)
                producer.flush()
                self.sent += len(chunk)
                await asyncio.sleep(PAUSE_S)


@pytest.fixture
def stack(tmp_path: Path, memory_schema: Settings) -> Iterator[tuple[Settings, str]]:
    settings = isolated_settings(stack_dir=tmp_path)
    app_id = f"repl-fault-{uuid.uuid4().hex[:8]}"
    create_topics(settings, ("memory.wal", "memory.wal.dlq"))
    yield settings, app_id
    replica_accepts_connections(settings, True)
    delete_test_topics(settings, app_id)


def test_replica_outage_and_kill9_leave_the_replica_equal_to_the_primary(
    stack: tuple[Settings, str], tmp_path: Path
) -> None:
    settings, app_id = stack
    tenants = [f"f-{uuid.uuid4().hex[:8]}" for _ in range(TENANTS)]
    replica = settings.replica_postgres_dsn()

    def replicated() -> int:
        return sum(len(scope_digest(replica, scope)) for scope in scopes(tenants))

    def worker(name: str) -> WorkerProcess:
        return WorkerProcess(
            "replication", settings, app_id, free_port(), tmp_path / name, tmp_path / f"{name}.log"
        ).start()

    first = worker("first").wait_ready()
    feeder = Feeder(settings, tenants)
    feeder.start()
    try:
        wait_until(lambda: replicated() >= 300, 60, "the first records replicated")

        # 1. The replica goes away: nothing is dead-lettered, lag grows and is reported.
        replica_accepts_connections(settings, False)
        stalled = replicated_while_down = None
        try:

            def lagging() -> dict[str, object] | None:
                body = first.get("/health", internal=False).json()
                return body if body["lag"].get("seconds", 0) > 10 else None

            stalled = wait_until(lagging, 60, "the health page to report > 10 s of lag")
            metrics = first.get("/metrics", internal=False).text
        finally:
            replica_accepts_connections(settings, True)
        assert stalled["status"] in ("degraded", "down")
        assert stalled["replica"]["mode"] in ("degraded", "down")
        lags = [
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("soma_replication_lag_seconds{")
        ]
        assert max(lags) > 10, lags
        replicated_while_down = replicated()
        wait_until(lambda: replicated() > replicated_while_down + 200, 90, "replication to resume")

        # 2. kill -9 mid-stream; a new worker of the group takes over from the last commit.
        first.kill9()
        second = worker("second").wait_ready()
    finally:
        feeder.done.wait(120)
    assert feeder.error is None, feeder.error
    assert feeder.sent == EVENTS

    wait_committed(settings, app_id, settings.topic_prefix + "memory.wal", timeout_s=120)
    for scope in scopes(tenants):
        primary = scope_digest(settings.postgres_dsn, scope)
        assert len(primary) == EVENTS // TENANTS
        difference = compare(primary, scope_digest(replica, scope))
        assert difference.equal, (scope, difference)
    assert read_topic(settings, settings.topic_prefix + "memory.wal.dlq") == []
    health = wait_until(
        lambda: (
            (b := second.get("/health", internal=False).json())["lag"].get("offsets") == 0 and b
        ),
        30,
        "lag back to zero",
    )
    assert health["status"] == "ok"
    second.stop()
