"""Scale-out: workers join and leave one flow's group mid-load; counts stay exact and the
gateway's state reads answer 200, or 503 with Retry-After while a partition moves."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from gateway.auth import issue_token
from soma.settings import Settings
from tests.conftest import TEST_JWT_KEYS
from tests.faults.test_flow_kill9 import Feeder
from tests.support.flows import (
    TestProducer,
    WorkerProcess,
    wait_committed,
)
from tests.support.processes import free_port, running_gateway, wait_until

pytestmark = pytest.mark.fault

KEYS = [(f"tenant{t}", f"session{s}") for t in range(3) for s in range(8)]


class Reader(threading.Thread):
    """Reads every key's count through the gateway until stopped; keeps every status seen."""

    def __init__(self, base: str, token_for: Callable[[str], str]) -> None:
        super().__init__(daemon=True)
        self.base, self.token_for = base, token_for
        self.statuses: Counter[int] = Counter()
        self.bad: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as client:
            while not self.stop.is_set():
                for tenant, session in KEYS:
                    response = client.get(
                        f"/v1/state/session-events/{session}",
                        headers={"Authorization": f"Bearer {self.token_for(tenant)}"},
                    )
                    self.statuses[response.status_code] += 1
                    ok = response.status_code == 200 or (
                        response.status_code == 503 and response.headers.get("Retry-After")
                    )
                    if not ok:
                        self.bad.append(f"{response.status_code} {response.text[:200]}")


def test_workers_join_leave_and_die_mid_load_and_counts_stay_exact(
    session_counts_group: tuple[Settings, str], tmp_path: Path
) -> None:
    settings, app_id = session_counts_group
    tokens = {t: issue_token(settings, t) for t, _ in KEYS}
    workers: list[WorkerProcess] = []

    def worker(name: str) -> WorkerProcess:
        w = WorkerProcess(
            "session-counts",
            settings,
            app_id,
            free_port(),
            tmp_path / name,
            tmp_path / f"{name}.log",
        )
        workers.append(w.start())
        return w

    def both_own(a: WorkerProcess, b: WorkerProcess) -> bool:
        try:
            return all(w.ready() and w.get("/ready").json()["actives"] for w in (a, b))
        except httpx.HTTPError:
            return False

    env = {
        "SOMA_TOPIC_PREFIX": settings.topic_prefix,
        "SOMA_STACK_DIR": str(settings.stack_dir),
        "SOMA_JWT_KEYS": json.dumps(TEST_JWT_KEYS),
        "SOMA_JWT_ACTIVE_KID": "k2",
    }
    producer = TestProducer(settings)
    try:
        with running_gateway(env, tmp_path / "gateway.log") as base:
            first = worker("w1").wait_ready()
            reader = Reader(base, tokens.__getitem__)
            reader.start()
            feeder = Feeder(producer, KEYS, total=6000, chunk=60, pause_s=0.05)
            feeder.start()

            second = worker("w2").wait_ready()  # joins mid-load
            wait_until(lambda: both_own(first, second), 90, "both workers owning partitions")
            second.stop()  # leaves: SIGTERM, a clean hand-over
            wait_until(lambda: len(first.get("/ready").json()["actives"]) == 12, 90, "w1 owns all")

            third = worker("w3").wait_ready()  # joins, then dies
            wait_until(lambda: both_own(first, third), 90, "w1 and w3 owning partitions")
            third.kill9()

            feeder.join(timeout=120)
            assert feeder.error is None and sum(producer.sent.values()) == 6000
            wait_committed(settings, app_id, settings.topic_prefix + "conversation.inbound")

            def counts() -> dict[str, tuple[int, int]] | None:
                """key -> (count, partition) of every key, once every read answers 200."""
                answers = {}
                with httpx.Client(base_url=base, timeout=10) as client:
                    for tenant, session in KEYS:
                        response = client.get(
                            f"/v1/state/session-events/{session}",
                            headers={"Authorization": f"Bearer {tokens[tenant]}"},
                        )
                        if response.status_code != 200:
                            return None
                        body = response.json()
                        answers[f"{tenant}/{session}"] = (body["count"], body["partition"])
                return answers

            answered = wait_until(counts, 60, "every count read back")
            wrong = {
                k: (c, p, producer.sent[k])
                for k, (c, p) in answered.items()
                if c != producer.sent[k]
            }
            assert not wrong, f"key -> (count, partition, sent): {wrong}"
            reader.stop.set()
            reader.join(timeout=30)
    finally:
        for w in workers:
            w.stop()
    assert reader.bad == [], reader.bad[:5]
    assert reader.statuses[200] > len(KEYS)  # reads went on through the rebalances
