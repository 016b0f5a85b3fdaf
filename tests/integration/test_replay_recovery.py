"""Recovery by replay: wipe the replica (then the primary), re-drive memory.wal (then an archive
of it) into it, and the store matches again; ranges by time and tenant; the rate bound; the CLI."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from flows.errors import SourceTopicMissing
from flows.jobs.replay import ReplayRequest, run_replay
from processors.partitioning import partition_for
from processors.replay import REPLAY_JOB, REPLAY_OF
from soma.cli import app as soma_app
from soma.settings import Settings, get_settings
from state.memory.snapshot import compare, scope_digest, wipe_scope
from tests.support.flows import create_topics, delete_test_topics, isolated_settings, read_topic
from tests.support.wal import WalProducer, scopes, wal_event, write_primary

pytestmark = pytest.mark.integration

PER_TENANT = 150


@pytest.fixture
def settings(tmp_path: Path, memory_schema: Settings) -> Iterator[Settings]:
    settings = isolated_settings(stack_dir=tmp_path)
    create_topics(settings, ("memory.wal", "agent.audit.v1"))
    yield settings
    delete_test_topics(settings)


def load(settings: Settings, tenants: list[str], first: int = 0) -> list[dict[str, object]]:
    events = [wal_event(t, n) for t in tenants for n in range(first, first + PER_TENANT)]
    write_primary(settings, events)
    producer = WalProducer(settings)
    producer.send(events)
    producer.send(events[:25])  # a redelivered tail: replays must not care
    producer.flush()
    return events


def digests(dsn: str, tenants: list[str]) -> dict[str, dict[str, str]]:
    return {s.prefix: scope_digest(dsn, s) for s in scopes(tenants)}


def test_wiped_replica_then_wiped_primary_are_rebuilt_from_the_wal(settings: Settings) -> None:
    tenants = [f"rr-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    load(settings, tenants)
    primary = digests(settings.postgres_dsn, tenants)
    replica_dsn = settings.replica_postgres_dsn()
    for scope in scopes(tenants):
        wipe_scope(replica_dsn, scope)

    report = run_replay(settings, ReplayRequest(target="replica", topic="memory.wal"))
    assert report.tally.read == report.tally.planned == 3 * PER_TENANT + 25
    assert report.tally.refused == 0
    assert digests(replica_dsn, tenants) == primary

    again = run_replay(settings, ReplayRequest(target="replica", topic="memory.wal"))
    assert again.tally.present == again.tally.written == again.tally.read  # idempotent

    for scope in scopes(tenants):
        assert wipe_scope(settings.postgres_dsn, scope) == PER_TENANT
    run_replay(settings, ReplayRequest(target="backend", topic="memory.wal"))
    assert digests(settings.postgres_dsn, tenants) == primary


def test_an_archive_rebuilds_the_replica_and_imports_into_another_topic_set(
    settings: Settings, tmp_path: Path
) -> None:
    tenants = [f"ra-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    load(settings, tenants)
    primary = digests(settings.postgres_dsn, tenants)
    file = tmp_path / "wal.avro"
    exported = run_replay(
        settings, ReplayRequest(target="archive", topic="memory.wal", target_file=file)
    )
    assert exported.tally.written == 2 * PER_TENANT + 25 and exported.tally.raw == 0
    assert not file.with_name("wal.avro.part").exists()

    replica_dsn = settings.replica_postgres_dsn()
    for scope in scopes(tenants):
        wipe_scope(replica_dsn, scope)
    restored = run_replay(settings, ReplayRequest(target="replica", archive=file))
    assert restored.tally.refused == 0
    assert digests(replica_dsn, tenants) == primary

    # A topic set without the topic: refused at once (not after every produce timed out).
    with pytest.raises(SourceTopicMissing):
        run_replay(
            isolated_settings(stack_dir=tmp_path), ReplayRequest(target="topic", archive=file)
        )

    # Back into a topic (a fresh topic set): same keys, murmur2 partitions, values, headers.
    other = isolated_settings(stack_dir=tmp_path)
    create_topics(other, ("memory.wal",))
    try:
        imported = run_replay(other, ReplayRequest(target="topic", archive=file))
        assert imported.tally.written == exported.tally.written
        original = read_topic(settings, settings.topic_prefix + "memory.wal")
        copied = read_topic(other, other.topic_prefix + "memory.wal")
        by_key = {}
        for record in original:
            by_key.setdefault(record.key(), []).append(orjson.loads(record.value()))
        assert len(copied) == len(original)
        for record in copied:
            assert record.partition() == partition_for(record.key(), 6)
            assert orjson.loads(record.value()) in by_key[record.key()]
            headers = dict(record.headers())
            assert headers["tenant"] == record.key().split(b"/")[0]
            assert headers[REPLAY_JOB] == imported.job_id.encode()
            assert headers[REPLAY_OF].startswith(settings.topic_prefix.encode())
        # Re-driving the imported records again: their replay marks are replaced, not stacked.
        again = run_replay(other, ReplayRequest(target="topic", topic="memory.wal"))
        doubled = read_topic(other, other.topic_prefix + "memory.wal")
        assert len(doubled) == 2 * len(copied) and again.tally.written == len(copied)
        for record in doubled:
            names = [name for name, _ in record.headers()]
            assert names.count(REPLAY_OF) == names.count(REPLAY_JOB) == 1, names
        marks = {dict(r.headers())[REPLAY_JOB] for r in doubled}
        assert marks == {imported.job_id.encode(), again.job_id.encode()}
    finally:
        delete_test_topics(other)


def test_a_time_range_of_one_tenant_at_a_bounded_rate(settings: Settings) -> None:
    mine, other = f"rt-{uuid.uuid4().hex[:8]}", f"rt-{uuid.uuid4().hex[:8]}"
    load(settings, [mine, other])
    time.sleep(0.05)  # the second round's records are stamped strictly later
    boundary_ms = int(time.time() * 1000)
    time.sleep(0.05)
    later = load(settings, [mine, other], first=PER_TENANT)
    replica_dsn = settings.replica_postgres_dsn()
    for scope in scopes([mine, other]):
        wipe_scope(replica_dsn, scope)

    started = time.monotonic()
    report = run_replay(
        settings,
        ReplayRequest(
            target="replica", topic="memory.wal", from_time_ms=boundary_ms, tenant=mine, rate=100
        ),
    )
    elapsed = time.monotonic() - started
    assert report.tally.read == 2 * PER_TENANT + 25  # only the second round was planned
    assert report.tally.selected == PER_TENANT + 25
    expected = {f"{mine}/wm/default/{e['idempotency_key']}" for e in later if e["tenant"] == mine}
    (scope,) = scopes([mine])
    assert set(scope_digest(replica_dsn, scope)) == expected
    assert scope_digest(replica_dsn, scopes([other])[0]) == {}
    # 175 events at 100/s with a burst of 100: at least 0.75 s.
    assert elapsed >= 0.7, elapsed


def test_the_cli_replays_prints_a_summary_and_is_audited(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOMA_TOPIC_PREFIX", settings.topic_prefix)
    get_settings.cache_clear()  # the CLI reads the process-wide settings
    tenant = f"rc-{uuid.uuid4().hex[:8]}"
    load(settings, [tenant])
    (scope,) = scopes([tenant])
    wipe_scope(settings.replica_postgres_dsn(), scope)
    result = CliRunner().invoke(
        soma_app,
        ["replay", "memory.wal", "--to", "replica", "--tenant", tenant, "--no-progress"],
    )
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert f"written {PER_TENANT + 25} (already present 25)" in result.output
    difference = compare(
        scope_digest(settings.postgres_dsn, scope),
        scope_digest(settings.replica_postgres_dsn(), scope),
    )
    assert difference.equal
    (audited,) = read_topic(settings, settings.topic_prefix + "agent.audit.v1")
    event = orjson.loads(audited.value())
    assert (event["action"], event["tenant"]) == ("replay.run", tenant)
    assert event["details"]["written"] == PER_TENANT + 25
