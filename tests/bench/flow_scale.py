"""Benchmark: session-counts events/s with 1 and with 2 workers on the same load, and the ratio.

Run with `make bench` (the stack must be up). Each run uses a fresh topic set and group: the
workers start first and hold their partitions, then the whole load is produced at once and the
clock runs until the group has committed every record. On a 2-core box the broker, the
producer and the workers share the cores, so the ratio says what a second process buys here.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.flows import (
    TestProducer,
    WorkerProcess,
    create_topics,
    delete_test_topics,
    group_lag,
    isolated_settings,
    wait_until,
)
from tests.support.processes import free_port

EVENTS = int(os.environ.get("BENCH_FLOW_EVENTS", "30000"))
KEYS = [(f"tenant{t}", f"session{s}") for t in range(20) for s in range(100)]  # 2000 keys


def run(workers: int) -> float:
    """Events/s for `workers` workers of one group over EVENTS events."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = isolated_settings(stack_dir=Path(tmp))
        app_id = f"{settings.topic_prefix}bench-counts"
        create_topics(settings, ("conversation.inbound", "conversation.inbound.dlq"))
        started: list[WorkerProcess] = []
        try:
            for n in range(workers):
                worker = WorkerProcess(
                    "session-counts",
                    settings,
                    app_id,
                    free_port(),
                    Path(tmp) / f"w{n}",
                    Path(tmp) / f"w{n}.log",
                )
                started.append(worker.start())
            for worker in started:
                worker.wait_ready()

            def all_own() -> bool:
                try:
                    return all(len(w.get("/ready").json()["actives"]) > 0 for w in started)
                except httpx.HTTPError:
                    return False

            wait_until(all_own, 90, "every worker owning partitions")
            source = settings.topic_prefix + "conversation.inbound"
            producer = TestProducer(settings)
            began = time.perf_counter()
            producer.send(KEYS[i % len(KEYS)] for i in range(EVENTS))
            producer.flush()
            wait_until(
                lambda: group_lag(settings, app_id, source) == 0,
                600,
                "the group to commit the load",
                interval_s=0.2,
            )
            return EVENTS / (time.perf_counter() - began)
        finally:
            for worker in started:
                worker.stop()
            delete_test_topics(settings, app_id)


def main() -> None:
    one = run(1)
    two = run(2)
    print(f"session-counts, {EVENTS} events over {len(KEYS)} keys (produce + process + commit)")
    print(f"  1 worker : {one:8.0f} events/s")
    print(f"  2 workers: {two:8.0f} events/s")
    print(f"  ratio 2/1: {two / one:.2f}")


if __name__ == "__main__":
    main()
