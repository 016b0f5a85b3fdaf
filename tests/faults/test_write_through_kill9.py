"""kill -9 the write-through worker at random moments (once losing its local state): afterwards
every event is in the backend exactly once, the WAL holds one record per write, links complete."""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Callable

import httpx
import orjson
import pytest

from flows.failpoints import (
    AFTER_CHANGELOG_DURABLE,
    AFTER_LOCAL_WRITE,
    AFTER_OUTPUTS_DURABLE,
    EXIT_FAILPOINT,
)
from soma.settings import Settings
from tests.support.flows import WorkerProcess, group_lag, wait_committed
from tests.support.processes import wait_until
from tests.support.somabrain import StandIn
from tests.support.write_through import (
    SOURCES,
    Feeder,
    TrafficProducer,
    assert_exactly_once,
    duplicates,
    planned,
    stored_count,
    stored_links,
    topic_values,
    turn_links,
    turn_traffic,
)

pytestmark = pytest.mark.fault

SORTED = orjson.OPT_SORT_KEYS

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


def wal_sent(worker: WorkerProcess) -> int:
    """WAL records this worker process sent so far (its own metrics), 0 while it cannot say."""
    try:
        text = worker.get("/metrics", internal=False).text
    except httpx.HTTPError:
        return 0
    found = re.search(
        r'soma_flow_events_out_total\{flow="write-through",topic="memory.wal"\} (\S+)', text
    )
    return int(float(found.group(1))) if found else 0


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

    assert_exactly_once(settings, app_id, memory_schema, tenants, feeder.producer.sent)
    print(f"stored at each kill: {at_kill}")


@pytest.mark.parametrize(
    "crash_at, restart_in",
    [
        # WAL records acknowledged, finished positions not yet written anywhere: the replay
        # looks unfinished, and the hand-over check finds the records already sent.
        (AFTER_OUTPUTS_DURABLE, "same-dir"),
        (AFTER_OUTPUTS_DURABLE, "empty-dir"),
        # Positions in the local store only: the replay is recognised from the store.
        (AFTER_LOCAL_WRITE, "same-dir"),
        # Positions durable in the changelog: recognised even with the local state wiped.
        (AFTER_CHANGELOG_DURABLE, "empty-dir"),
    ],
)
def test_crash_between_the_commit_steps(
    crash_at: str,
    restart_in: str,
    write_through_stack: tuple[Settings, str],
    write_through_worker_factory: WorkerFactory,
    memory_schema: Settings,
) -> None:
    """A crash exactly between two commit steps, then a restart: the backend, the links and
    the WAL hold every event exactly once, whichever step the crash interrupted."""
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
    assert topic_values(settings, "memory.wal"), "the crash came after the WAL was acknowledged"

    restarted = write_through_worker_factory("state-a" if restart_in == "same-dir" else "state-b")
    assert_exactly_once(settings, app_id, memory_schema, tenants, traffic)
    # Only the first case needed the hand-over check; in the others the positions said it.
    log = restarted.log_path.read_text()
    assert ("sent by the partition's previous owner" in log) is (crash_at == AFTER_OUTPUTS_DURABLE)


def test_kill9_against_the_somabrain_standin_never_remembers_a_key_twice_differently(
    write_through_stack: tuple[Settings, str],
    write_through_worker_factory: WorkerFactory,
    memory_schema: Settings,
    standin: StandIn,
) -> None:
    settings, app_id = write_through_stack
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    tenants = [f"b{uuid.uuid4().hex[:8]}"]
    traffic = turn_traffic(tenants, sessions=8, turns=400, writes=300)  # 1500 events
    feeder = Feeder(TrafficProducer(settings), traffic, chunk=30, pause_s=0.5)
    env = {"SOMA_BASE_URL": standin.url, "SOMA_API_TOKEN": standin.token}
    kills = [rng.randrange(100, 500), rng.randrange(50, 400)]
    print(f"seed {seed}: each worker killed once it sent {kills} WAL records")

    def remembered() -> int:
        return sum(1 for item in standin.items() if item["tenant"] in tenants)

    worker = write_through_worker_factory("state-a", env=env).wait_ready()
    feeder.start()
    at_kill = []
    for kill_after, restart_in in zip(kills, ("state-a", "state-b"), strict=True):
        wait_until(
            lambda w=worker, n=kill_after: wal_sent(w) >= n,  # type: ignore[misc]
            timeout_s=120,
            what=f"{kill_after} WAL records sent",
            interval_s=0.05,
        )
        worker.kill9()
        at_kill.append(remembered())
        # Same state directory first, then an empty one (tables from the changelogs alone).
        worker = write_through_worker_factory(restart_in, env=env).wait_ready()
    feeder.join(timeout=180)
    assert feeder.error is None
    assert all(n < len(traffic) for n in at_kill), f"a kill came after the run: {at_kill}"
    for source in SOURCES:
        wait_committed(settings, app_id, settings.topic_prefix + source, timeout_s=120)

    expected = planned(traffic)
    items = {i["key"]: i for i in standin.items() if i["tenant"] in tenants}
    assert items.keys() == expected.keys()
    # Every time a key was sent (replays included), it carried the same content.
    contents: dict[str, set[bytes]] = {}
    for request in standin.requests("/memory/remember/batch"):
        for item in orjson.loads(request["body"]).get("items", []):
            if item["key"] in expected:
                sent = {name: item.get(name) for name in ("value", "meta", "universe", "tags")}
                contents.setdefault(item["key"], set()).add(orjson.dumps(sent, option=SORTED))
    assert contents.keys() == expected.keys()
    differing = {key: len(seen) for key, seen in contents.items() if len(seen) > 1}
    assert differing == {}, f"keys remembered with different content: {differing}"

    wal = topic_values(settings, "memory.wal")
    assert {r["memory_key"] for r in wal} == expected.keys()
    assert not duplicates(wal, "idempotency_key"), "one WAL record per write"
    assert all(r["backend"] == "somabrain" and len(r["coordinate"]) == 3 for r in wal)
    assert stored_links(memory_schema, tenants) == turn_links(traffic)
    assert topic_values(settings, "memory.outbox") == []
    print(f"remembered at each kill: {at_kill}")
