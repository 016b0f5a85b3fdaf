"""State reads survive the broker: 10 stop/start cycles (one a 60 s outage), one gateway process.

Every answer is 200 or 503 with Retry-After, the gateway never dies, and reads answer 200 again
within seconds of the broker answering. (The librdkafka admin client this replaced aborted the
gateway process after such a cycle: confluentinc/librdkafka#4605.)
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.auth import issue_token
from infra.stack.kafka import kafka_running, start_kafka, stop_kafka
from soma.settings import Settings
from tests.conftest import TEST_JWT_KEYS
from tests.support.flows import (
    TestProducer,
    WorkerProcess,
    wait_committed,
)
from tests.support.processes import free_port, running_gateway, wait_until

# Ten broker restarts and a 60 s outage take 3-5 minutes on a 2-core box.
pytestmark = [pytest.mark.fault, pytest.mark.timeout(900)]

CYCLES = 10
LONG_OUTAGE_CYCLE = 4  # this cycle's outage lasts LONG_OUTAGE_S
LONG_OUTAGE_S = 60.0
SHORT_OUTAGE_S = 2.0
KEYS = [("acme", f"s{i}") for i in range(6)]
STACK = Settings()  # the stack `soma stack up` runs (the test's own settings move only stack_dir)


@pytest.fixture
def group(session_counts_group: tuple[Settings, str]) -> Iterator[tuple[Settings, str]]:
    """The session-counts group, and a broker that is running again whatever the test did."""
    try:
        yield session_counts_group
    finally:
        if not kafka_running(STACK):
            start_kafka(STACK)


def test_state_reads_across_broker_cycles(group: tuple[Settings, str], tmp_path: Path) -> None:
    settings, app_id = group
    producer = TestProducer(settings)
    producer.send(KEYS * 5)
    producer.flush()
    worker = WorkerProcess(
        "session-counts", settings, app_id, free_port(), tmp_path / "w", tmp_path / "w.log"
    ).start()
    env = {
        "SOMA_TOPIC_PREFIX": settings.topic_prefix,
        "SOMA_STACK_DIR": str(settings.stack_dir),
        "SOMA_JWT_KEYS": json.dumps(TEST_JWT_KEYS),
        "SOMA_JWT_ACTIVE_KID": "k2",
    }
    headers = {"Authorization": f"Bearer {issue_token(settings, 'acme', ttl_s=3600)}"}
    statuses: Counter[int] = Counter()
    recoveries: list[float] = []
    try:
        worker.wait_ready()
        wait_committed(settings, app_id, settings.topic_prefix + "conversation.inbound")
        with (
            running_gateway(env, tmp_path / "gateway.log") as base,
            httpx.Client(base_url=base, headers=headers, timeout=15) as client,
        ):

            def read() -> int:
                response = client.get(f"/v1/state/session-events/{KEYS[0][1]}")
                statuses[response.status_code] += 1
                if response.status_code == 200:
                    assert response.json()["count"] == 5
                else:
                    assert response.status_code == 503, response.text
                    assert int(response.headers["Retry-After"]) >= 1
                return response.status_code

            wait_until(lambda: read() == 200, 60, "a first 200")
            for cycle in range(CYCLES):
                stop_kafka(STACK)
                outage = LONG_OUTAGE_S if cycle == LONG_OUTAGE_CYCLE else SHORT_OUTAGE_S
                deadline = time.monotonic() + outage
                while time.monotonic() < deadline:
                    read()  # 200 (cached assignment, worker still up) or 503: never a 500
                    time.sleep(0.5)
                start_kafka(STACK)  # returns once the broker answers metadata
                answered = time.monotonic()
                wait_until(lambda: read() == 200, 120, f"reads to answer 200 after cycle {cycle}")
                recoveries.append(time.monotonic() - answered)
            # The same gateway process answered throughout.
            assert client.get("/healthz").status_code in (200, 503)
    finally:
        worker.stop()
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[503] > 0, "the outages were never seen: the test did not test anything"
    print(f"recovery after the broker answered (s): {[round(r, 1) for r in recoveries]}")
    assert max(recoveries) < 60, recoveries
