"""kill -9 the write-through worker at random moments (once losing its local state): afterwards
every event is in the backend exactly once, the WAL holds one record per write, links complete."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from flows.failpoints import (
    AFTER_CHANGELOG_DURABLE,
    AFTER_LOCAL_WRITE,
    AFTER_OUTPUTS_DURABLE,
    EXIT_FAILPOINT,
)
from processors.policies import BATCH_DEFAULT
from soma.settings import Settings
from tests.support.flows import WorkerProcess, group_lag, wait_committed
from tests.support.processes import wait_until
from tests.support.write_through import (
    SOURCES,
    Feeder,
    Sent,
    TrafficProducer,
    duplicates,
    planned,
    stored,
    stored_at,
    stored_count,
    stored_links,
    topic_values,
    turn_links,
    turn_traffic,
)

pytestmark = pytest.mark.fault

WorkerFactory = Callable[..., WorkerProcess]


def kill_when_stored(worker: WorkerProcess, settings: Settings, tenants: list[str], n: int) -> int:
    """kill -9 `worker` once `n` writes are stored; returns how many were stored by then."""
    wait_until(
        lambda: stored_count(settings, tenants) >= n,
        timeout_s=120,
        what=f"{n} writes stored",
        interval_s=0.05,
    )
    worker.kill9()
    return stored_count(settings, tenants)


def assert_exactly_once(
    settings: Settings, app_id: str, memory: Settings, tenants: list[str], sent: list[Sent]
) -> list[dict[str, Any]]:
    """Everything committed; the backend, the WAL and the links hold each event exactly once."""
    for source in SOURCES:
        wait_committed(settings, app_id, settings.topic_prefix + source, timeout_s=120)
    expected = planned(sent)
    assert len(expected) == len(sent)
    rows = stored(memory, tenants)  # the key is the primary key: a row per key at most
    assert rows.keys() == expected.keys(), "every event stored, nothing else"
    assert rows == {key: dict(write.write.value) for key, write in expected.items()}
    wal = topic_values(settings, "memory.wal")
    assert {r["memory_key"] for r in wal} == expected.keys()
    for record in wal:
        assert record["payload"] == dict(expected[record["memory_key"]].write.value)
    assert stored_links(memory, tenants) == turn_links(sent)
    assert topic_values(settings, "memory.outbox") == []
    for source in SOURCES:
        assert topic_values(settings, f"{source}.dlq") == []
    return wal


def resends_only(wal: list[dict[str, Any]]) -> int:
    """The WAL's duplicate records, checked to be re-sends of one acknowledgement each."""
    repeated = duplicates(wal, "idempotency_key")
    for key in repeated:
        copies = [r for r in wal if r["idempotency_key"] == key]
        same = {
            (r["source_topic"], r["source_partition"], r["source_offset"], r["memory_key"])
            for r in copies
        }
        assert len(same) == 1, f"{key}: WAL records of different writes share a key"
    return sum(repeated.values()) - len(repeated)


def test_kill9_at_random_moments_then_with_local_state_wiped(
    write_through_stack: tuple[Settings, str],
    write_through_worker_factory: WorkerFactory,
    memory_schema: Settings,
) -> None:
    settings, app_id = write_through_stack
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    tenants = [f"k{uuid.uuid4().hex[:8]}", f"k{uuid.uuid4().hex[:8]}"]
    traffic = turn_traffic(tenants, sessions=12, turns=1100, writes=700)  # 4000 events
    feeder = Feeder(TrafficProducer(settings), traffic, chunk=40, pause_s=0.3)
    kills = sorted(rng.sample(range(300, 3400), 3))
    print(f"seed {seed}: kills once {kills} writes are stored")

    worker = write_through_worker_factory("state-a").wait_ready()
    feeder.start()
    at_kill = [kill_when_stored(worker, memory_schema, tenants, kills[0])]
    # Same state directory: the local store, then the changelog tail, then the replay.
    worker = write_through_worker_factory("state-a").wait_ready()
    at_kill.append(kill_when_stored(worker, memory_schema, tenants, kills[1]))
    # Local state wiped: the tables come back from their changelogs alone.
    worker = write_through_worker_factory("state-b").wait_ready()
    at_kill.append(kill_when_stored(worker, memory_schema, tenants, kills[2]))
    worker = write_through_worker_factory("state-b").wait_ready()
    feeder.join(timeout=180)
    assert feeder.error is None
    assert all(n < len(traffic) for n in at_kill), f"a kill came after the run: {at_kill}"

    wal = assert_exactly_once(settings, app_id, memory_schema, tenants, feeder.producer.sent)
    # A kill in the milliseconds between the WAL records' acks and the changelog ack of the
    # finished positions, followed by the restart that lost the local store, re-sends that
    # one batch: identical records (same key, write and source position) that compaction
    # folds into one. One batch is one backend transaction: its rows share `stored_at`.
    extra = resends_only(wal)
    inserted = stored_at(memory_schema, tenants)
    batches = {inserted[key] for key in duplicates(wal, "memory_key")}
    assert len(batches) <= 1, f"WAL re-sends from {len(batches)} batches"
    assert extra <= BATCH_DEFAULT.max_events
    print(f"stored at each kill: {at_kill}; WAL re-sends: {extra} (one batch)")


@pytest.mark.parametrize(
    "crash_at, restart_in, resent",
    [
        # The window: WAL records acknowledged, finished positions not yet written anywhere.
        (AFTER_OUTPUTS_DURABLE, "same-dir", "all"),
        # Positions in the local store only: the replay is recognised from the store.
        (AFTER_LOCAL_WRITE, "same-dir", "none"),
        # Positions durable in the changelog: recognised even with the local state wiped.
        (AFTER_CHANGELOG_DURABLE, "empty-dir", "none"),
    ],
)
def test_crash_between_the_commit_steps(
    crash_at: str,
    restart_in: str,
    resent: str,
    write_through_stack: tuple[Settings, str],
    write_through_worker_factory: WorkerFactory,
    memory_schema: Settings,
) -> None:
    """A crash exactly between two commit steps, then a restart: the backend and the links are
    exact either way; the WAL re-sends the crashed batch only in the window before its
    finished positions reach the store, and then identically."""
    settings, app_id = write_through_stack
    tenants = [f"c{uuid.uuid4().hex[:8]}"]
    traffic = turn_traffic(tenants, sessions=3, turns=20, writes=10)
    producer = TrafficProducer(settings)
    producer.send(traffic)
    producer.flush()

    crashing = write_through_worker_factory("state-a", failpoint=f"{crash_at}:1")
    assert crashing.wait_exit() == EXIT_FAILPOINT
    lag = sum(group_lag(settings, app_id, settings.topic_prefix + s) for s in SOURCES)
    assert lag == len(traffic), "nothing may be committed"
    crashed_batch = len(topic_values(settings, "memory.wal"))
    assert crashed_batch > 0, "the crash came after the WAL records were acknowledged"

    write_through_worker_factory("state-a" if restart_in == "same-dir" else "state-b")
    wal = assert_exactly_once(settings, app_id, memory_schema, tenants, traffic)
    assert resends_only(wal) == (crashed_batch if resent == "all" else 0)
