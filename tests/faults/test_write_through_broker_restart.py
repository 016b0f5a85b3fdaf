"""The broker restarts in the middle of a write-through run: nothing lost, nothing doubled."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from infra.stack.errors import StackError
from infra.stack.kafka import kafka_running, start_kafka, stop_kafka
from soma.settings import Settings
from tests.support.flows import WorkerProcess
from tests.support.processes import wait_until
from tests.support.write_through import (
    Feeder,
    TrafficProducer,
    assert_exactly_once,
    stored_count,
    turn_traffic,
)

pytestmark = [pytest.mark.fault, pytest.mark.integration]


def restart(stack: Settings, attempts: int = 5) -> None:
    """Start the broker again, whatever it takes: every later test needs it.

    Its port may be held for a moment by a client socket that happened to get it as its
    ephemeral port (the stack's ports lie in Linux's ephemeral range), so a failed start is
    tried again after a pause.
    """
    for attempt in range(1, attempts + 1):
        try:
            start_kafka(stack)
            return
        except StackError:
            if attempt == attempts:
                raise
            time.sleep(2.0 * attempt)  # not awaiting a condition: giving the port time to free


def test_broker_restart_mid_run_keeps_every_event_exactly_once(
    write_through_stack: tuple[Settings, str],
    write_through_worker_factory: Callable[..., WorkerProcess],
    memory_schema: Settings,
) -> None:
    settings, app_id = write_through_stack
    tenants = [f"r{uuid.uuid4().hex[:8]}"]
    traffic = turn_traffic(tenants, sessions=10, turns=600, writes=400)  # 2200 events
    # The feeder keeps sending while the broker is away: its records wait, then land.
    feeder = Feeder(TrafficProducer(settings), traffic, chunk=40, pause_s=0.2)
    worker = write_through_worker_factory("state").wait_ready()
    feeder.start()
    wait_until(lambda: stored_count(memory_schema, tenants) >= 500, 120, "500 writes stored")
    stack = Settings()  # the stack's own directory (the test's settings point at a tmp dir)
    stop_kafka(stack)
    try:
        assert not kafka_running(stack)
        stopped_at = stored_count(memory_schema, tenants)
        assert stopped_at < len(traffic), "the broker stopped after the run"
    finally:
        restart(stack)
    assert kafka_running(stack)
    # A worker whose commit steps cannot finish exits rather than ack (flows/kit/commit.py);
    # the plane's supervisor would start it again: so does the test, with the same state.
    if worker.proc is not None and worker.proc.poll() is not None:
        print(f"worker exited with {worker.proc.returncode} during the outage; restarting")
        worker = write_through_worker_factory("state")
    worker.wait_ready(timeout_s=180)
    feeder.join(timeout=300)
    assert feeder.error is None
    assert_exactly_once(settings, app_id, memory_schema, tenants, feeder.producer.sent)
    print(f"stored when the broker stopped: {stopped_at} of {len(traffic)}")
