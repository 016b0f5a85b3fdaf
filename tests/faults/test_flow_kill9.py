"""kill -9 a session-counts worker mid-stream: counts converge exactly, from disk or changelog."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import httpx
import orjson
import pytest

from flows.failpoints import AFTER_CHANGELOG_DURABLE, AFTER_LOCAL_WRITE, EXIT_FAILPOINT
from soma.settings import Settings
from tests.support.flows import (
    TestProducer,
    WorkerProcess,
    group_lag,
    read_topic,
    wait_committed,
    wait_until,
)

pytestmark = pytest.mark.fault

KEYS = [(f"tenant{t}", f"session{s}") for t in range(4) for s in range(5)]  # 20 keys


class Feeder(threading.Thread):
    """Produces events at a steady pace so a kill lands while the worker is busy."""

    def __init__(
        self,
        producer: TestProducer,
        keys: Sequence[tuple[str, str]],
        total: int,
        chunk: int = 50,
        pause_s: float = 0.05,
    ) -> None:
        super().__init__(daemon=True)
        self.producer, self.keys, self.total = producer, keys, total
        self.chunk, self.pause_s = chunk, pause_s
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for start in range(0, self.total, self.chunk):
                batch = range(start, min(start + self.chunk, self.total))
                # Skewed: low-numbered keys get more events.
                self.producer.send(self.keys[(i * i + i // 7) % len(self.keys)] for i in batch)
                self.producer.flush()
                self.done.wait(self.pause_s)  # pacing between chunks
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()


def counted(worker: WorkerProcess) -> int | None:
    """Events counted so far over all keys, None while the worker cannot answer."""
    total = 0
    for tenant, session in KEYS:
        try:
            response = worker.get(f"/state/session-counts/{tenant}%2F{session}")
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        total += int(response.json()["count"])
    return total


def counts_by_key(worker: WorkerProcess) -> dict[str, int]:
    out = {}
    for tenant, session in KEYS:
        body = worker.get(f"/state/session-counts/{tenant}%2F{session}").json()
        out[f"{tenant}/{session}"] = body["count"]
    return out


def changelog_counts(settings: Settings, app_id: str) -> dict[str, int]:
    latest: dict[str, int] = {}
    for record in read_topic(settings, f"{app_id}-session_counts-changelog"):
        latest[record.key().decode()] = orjson.loads(record.value())["count"]
    return latest


def converge(
    settings: Settings, app_id: str, worker: WorkerProcess, expected: dict[str, int]
) -> None:
    """Wait until the group committed everything, then demand exact counts everywhere."""
    source = settings.topic_prefix + "conversation.inbound"
    worker.wait_ready()
    wait_committed(settings, app_id, source)
    assert counts_by_key(worker) == {k: expected.get(k, 0) for k in counts_by_key(worker)}
    # The changelog must hold the same values, or a restore would bring back stale counts.
    assert changelog_counts(settings, app_id) == expected


def kill_mid_stream(worker: WorkerProcess, feeder: Feeder, at_least: int) -> int:
    """Start feeding, kill -9 once `at_least` events are counted; returns what was counted."""
    feeder.start()
    seen = wait_until(
        lambda: (n := counted(worker)) is not None and n >= at_least and n,
        timeout_s=90,
        what=f"{at_least} events counted",
        interval_s=0.05,
    )
    worker.kill9()
    return int(seen)


def test_kill9_then_same_dir_then_empty_dir(
    flow_stack: tuple[Settings, str], flow_worker_factory: Callable[..., WorkerProcess]
) -> None:
    settings, app_id = flow_stack
    producer = TestProducer(settings)

    first = flow_worker_factory("state-a").wait_ready()
    feeder = Feeder(producer, KEYS, total=3000)
    seen = kill_mid_stream(first, feeder, at_least=600)
    feeder.join(timeout=60)
    assert feeder.error is None
    assert seen < 3000, "the kill came too late to interrupt the stream"

    # Same data dir: local RocksDB plus the changelog tail, then replay from the commit.
    second = flow_worker_factory("state-a").wait_ready()
    converge(settings, app_id, second, dict(producer.sent))

    # More events, only to half of the keys (so their changelog values must catch up alone).
    feeder = Feeder(producer, KEYS[:10], total=1500)
    seen = kill_mid_stream(second, feeder, at_least=3000 + 300)
    feeder.join(timeout=60)
    assert feeder.error is None
    assert seen < 4500, "the kill came too late to interrupt the stream"

    # New empty data dir: the table is restored from the changelog alone.
    third = flow_worker_factory("state-b").wait_ready()
    converge(settings, app_id, third, dict(producer.sent))
    assert sum(producer.sent.values()) == 4500


@pytest.mark.parametrize("restart_in", ["same-dir", "empty-dir"])
@pytest.mark.parametrize("crash_at", [AFTER_LOCAL_WRITE, AFTER_CHANGELOG_DURABLE])
def test_crash_exactly_between_commit_steps(
    crash_at: str,
    restart_in: str,
    flow_stack: tuple[Settings, str],
    flow_worker_factory: Callable[..., WorkerProcess],
) -> None:
    """after-local-write: the store is ahead of the changelog, which must catch up on replay.
    after-changelog-durable: the changelog is ahead of the commit, so replays must be skipped.
    """
    settings, app_id = flow_stack
    producer = TestProducer(settings)
    producer.send(KEYS * 3)
    producer.flush()

    crashing = flow_worker_factory("state-a", failpoint=f"{crash_at}:1")
    assert crashing.wait_exit() == EXIT_FAILPOINT
    source = settings.topic_prefix + "conversation.inbound"
    assert group_lag(settings, app_id, source) == len(KEYS) * 3, "nothing may be committed"

    restarted = flow_worker_factory("state-a" if restart_in == "same-dir" else "state-b")
    converge(settings, app_id, restarted, dict(producer.sent))
