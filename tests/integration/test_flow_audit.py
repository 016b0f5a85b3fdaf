"""The audit flow: per-tenant hash chains in Postgres, idempotent under redelivery, verified by
`soma audit verify`, which names a changed, a removed and a reordered record."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from soma.cli import app as soma_app
from soma.settings import Settings
from tests.support.flows import (
    WorkerProcess,
    create_topics,
    delete_test_topics,
    isolated_settings,
    wait_committed,
)
from tests.support.processes import free_port
from topics.audit import emit_audit
from topics.producer import EventProducer
from topics.records import RecordContext

pytestmark = pytest.mark.integration

PER_TENANT = 12


@pytest.fixture
def audit_stack(tmp_path: Path, memory_schema: Settings) -> Iterator[tuple[Settings, str]]:
    settings = isolated_settings(stack_dir=tmp_path)
    app_id = f"audit-{uuid.uuid4().hex[:10]}"
    create_topics(settings, ("agent.audit.v1", "agent.audit.v1.dlq"))
    yield settings, app_id
    delete_test_topics(settings, app_id)


async def emit_all(settings: Settings, tenants: list[str]) -> list[dict[str, object]]:
    """PER_TENANT events per tenant through emit_audit, then the first 3 of each again (a
    producer retry after a lost ack: same event id)."""
    producer = EventProducer(settings)
    try:
        sent = []
        for n in range(PER_TENANT):
            for tenant in tenants:
                sent.append(
                    await emit_audit(
                        producer, f"user{n}", tenant, "dlq.replay", f"dlq:{n}", "ok", f"req-{n}"
                    )
                )
        for event in sent[: 3 * len(tenants)]:
            await producer.send("agent.audit.v1", event, RecordContext(tenant=str(event["tenant"])))
        return sent
    finally:
        producer.close()


def verify_cli(tenant: str) -> tuple[int, str]:
    result = CliRunner().invoke(soma_app, ["audit", "verify", "--tenant", tenant])
    return result.exit_code, result.output


def sql(settings: Settings, statement: str, *params: object) -> None:
    with psycopg.connect(settings.postgres_dsn, autocommit=True) as conn:
        conn.execute(statement, params)


def test_chains_are_appended_once_and_verify_names_each_tampering(
    audit_stack: tuple[Settings, str], tmp_path: Path
) -> None:
    settings, app_id = audit_stack
    tenants = [f"a-{uuid.uuid4().hex[:8]}" for _ in range(4)]
    sent = asyncio.run(emit_all(settings, tenants))
    worker = WorkerProcess(
        "audit", settings, app_id, free_port(), tmp_path / "w", tmp_path / "w.log"
    ).start()
    try:
        worker.wait_ready()
        wait_committed(settings, app_id, settings.topic_prefix + "agent.audit.v1")
    finally:
        worker.stop()

    with psycopg.connect(settings.postgres_dsn) as conn:
        for tenant in tenants:
            rows = conn.execute(
                "SELECT seq, event_id FROM audit_log WHERE tenant = %s ORDER BY seq", (tenant,)
            ).fetchall()
            expected = [str(e["event_id"]) for e in sent if e["tenant"] == tenant]
            assert [r[1] for r in rows] == expected  # once each, in the order produced
            assert [r[0] for r in rows] == list(range(1, PER_TENANT + 1))
    for tenant in tenants:
        code, output = verify_cli(tenant)
        assert code == 0 and f"{PER_TENANT} links" in output, output

    changed, removed, reordered, intact = tenants
    sql(
        settings,
        "UPDATE audit_log SET canonical = replace(canonical, 'user4', 'mallory'),"
        " event = jsonb_set(event, '{actor}', '\"mallory\"') WHERE tenant = %s AND seq = 5",
        changed,
    )
    sql(settings, "DELETE FROM audit_log WHERE tenant = %s AND seq = 7", removed)
    for a, b in ((3, 10**12), (8, 3), (10**12, 8)):  # swap links 3 and 8 (seq is the key)
        sql(
            settings,
            "UPDATE audit_log SET seq = %s WHERE tenant = %s AND seq = %s",
            b,
            reordered,
            a,
        )

    for tenant, problem, seq in ((changed, "changed", 5), (removed, "removed", 8)):
        code, output = verify_cli(tenant)
        assert code == 1, output
        assert f"{problem:10} seq {seq}" in output, output
    code, output = verify_cli(reordered)
    assert code == 1 and "reordered  seq 3" in output and "changed" not in output, output
    assert verify_cli(intact)[0] == 0
