"""The Postgres memory backend: isolation held by the database itself, rejections, migrations."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import errors
from typer.testing import CliRunner

from processors.backend_policy import HealthMode
from processors.memory import MemoryWrite, RecallQuery
from processors.memory_keys import MemoryScope
from soma.cli_db import db_app
from soma.settings import Settings
from state.memory.errors import BackendRejected, BackendUnavailable
from state.memory.pg import SET_SCOPE
from state.memory.postgres import PostgresMemoryBackend
from tests.support.processes import free_port

pytestmark = pytest.mark.integration
ScopeFactory = Callable[..., MemoryScope]


@pytest.fixture
async def backend(memory_schema: Settings) -> AsyncIterator[PostgresMemoryBackend]:
    async with PostgresMemoryBackend(memory_schema.postgres_dsn) as built:
        yield built


@pytest.fixture
async def two_tenants(
    backend: PostgresMemoryBackend, scope_factory: ScopeFactory
) -> tuple[MemoryScope, MemoryScope]:
    alice, bob = scope_factory(), scope_factory()
    for scope in (alice, bob):
        await backend.remember(MemoryWrite.for_event(scope, "k", {"text": f"{scope.tenant} note"}))
    return alice, bob


def _count(conn: psycopg.Connection, tenant: str) -> int:
    row = conn.execute("SELECT count(*) FROM memory_items WHERE tenant = %s", (tenant,)).fetchone()
    assert row is not None
    return int(row[0])


async def test_a_query_without_the_tenant_set_sees_nothing(
    memory_schema: Settings, two_tenants: tuple[MemoryScope, MemoryScope]
) -> None:
    alice, _ = two_tenants
    with psycopg.connect(memory_schema.postgres_dsn) as conn:
        # The same role the backend uses, which owns the table: FORCE makes RLS apply to it.
        assert _count(conn, alice.tenant) == 0
        row = conn.execute("SELECT count(*) FROM memory_links").fetchone()
        assert row == (0,)
        conn.execute(SET_SCOPE, (alice.tenant, alice.namespace, alice.universe))
        assert _count(conn, alice.tenant) == 1


async def test_another_tenant_can_neither_read_nor_write(
    memory_schema: Settings, two_tenants: tuple[MemoryScope, MemoryScope]
) -> None:
    alice, bob = two_tenants
    with psycopg.connect(memory_schema.postgres_dsn) as conn:
        conn.execute(SET_SCOPE, (alice.tenant, alice.namespace, alice.universe))
        assert _count(conn, bob.tenant) == 0
        updated = conn.execute(
            'UPDATE memory_items SET value = \'{"text": "x"}\' WHERE tenant = %s', (bob.tenant,)
        )
        assert updated.rowcount == 0
        deleted = conn.execute("DELETE FROM memory_items WHERE tenant = %s", (bob.tenant,))
        assert deleted.rowcount == 0
        with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
            conn.execute(
                "INSERT INTO memory_items (key, tenant, namespace, universe, value, body)"
                " VALUES (%s, %s, %s, %s, '{}', '')",
                (f"{bob.prefix}forged", bob.tenant, bob.namespace, bob.universe),
            )
    with psycopg.connect(memory_schema.postgres_dsn) as conn:
        conn.execute(SET_SCOPE, (bob.tenant, bob.namespace, bob.universe))
        assert _count(conn, bob.tenant) == 1


async def test_the_database_refuses_a_key_outside_its_scope(
    memory_schema: Settings, scope_factory: ScopeFactory
) -> None:
    scope = scope_factory()
    with psycopg.connect(memory_schema.postgres_dsn) as conn:
        conn.execute(SET_SCOPE, (scope.tenant, scope.namespace, scope.universe))
        with pytest.raises(errors.CheckViolation, match="memory_items_key_in_scope"):
            conn.execute(
                "INSERT INTO memory_items (key, tenant, namespace, universe, value, body)"
                " VALUES ('someone-else/wm/default/k', %s, %s, %s, '{}', '')",
                (scope.tenant, scope.namespace, scope.universe),
            )


async def test_a_value_postgres_cannot_store_is_rejected_naming_the_field(
    backend: PostgresMemoryBackend, scope_factory: ScopeFactory
) -> None:
    bad = MemoryWrite.for_event(scope_factory(), "k", {"text": "nul \u0000 inside"})
    with pytest.raises(BackendRejected) as caught:
        await backend.remember(bad)
    assert caught.value.field == "value"
    assert caught.value.backend == "postgres"


async def test_a_memory_from_year_one_is_recalled_not_an_underflow(
    backend: PostgresMemoryBackend, scope_factory: ScopeFactory
) -> None:
    # Seen in the contract run: a schema-valid occurred_at of 0001-01-01 made the recency
    # factor 0.5^(age/half-life) underflow, and Postgres failed every recall of the scope.
    scope = scope_factory()
    ancient = datetime(1, 1, 1, tzinfo=UTC)
    await backend.remember(
        MemoryWrite.for_event(scope, "old", {"text": "heron"}, occurred_at=ancient)
    )
    await backend.remember(MemoryWrite.for_event(scope, "new", {"text": "heron"}))
    query = RecallQuery(scope.tenant, scope.namespace, "heron", top_k=5, universe=scope.universe)
    hits = await backend.recall(query)
    assert [str(hit.key).rsplit("/", 1)[-1] for hit in hits] == ["new", "old"]


async def test_a_postgres_that_is_not_there_is_unavailable_fast() -> None:
    dsn = f"postgresql://soma:soma@127.0.0.1:{free_port()}/soma"
    backend = PostgresMemoryBackend(dsn)
    started = time.monotonic()
    health = await backend.health()
    assert health.mode is HealthMode.DOWN
    assert time.monotonic() - started < 1.5
    write = MemoryWrite.for_event(MemoryScope("t", "wm"), uuid.uuid4().hex, {"text": "x"})
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as caught:
        await backend.remember(write)
    assert caught.value.reason == "connect"
    assert time.monotonic() - started < 1.5
    await backend.aclose()


def test_db_upgrade_migrates_main_and_replica(memory_schema: Settings) -> None:
    runner = CliRunner()
    upgraded = runner.invoke(db_app, ["upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    status = runner.invoke(db_app, ["status"])
    assert status.exit_code == 0, status.output
    lines = status.output.splitlines()
    assert [line.split()[0] for line in lines] == ["main", "replica"]
    assert all(line.endswith("up to date") for line in lines)
    with psycopg.connect(memory_schema.replica_postgres_dsn()) as conn:
        row = conn.execute(
            "SELECT relforcerowsecurity FROM pg_class WHERE relname = 'memory_items'"
        )
        assert row.fetchone() == (True,)
