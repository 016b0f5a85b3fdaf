"""Benchmark: WAL replication throughput (a backlog) and replication lag under a steady load.

Run with `make bench` (the stack must be up). A fresh topic set and group per run; the replica
is the stack's replica database (fresh tenants). Lag is what the worker itself reports on
/health (age of the oldest WAL record not yet replicated, and records still to replicate),
sampled every 0.5 s.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from soma.settings import Settings
from tests.support.flows import (
    WorkerProcess,
    create_topics,
    delete_test_topics,
    isolated_settings,
    wait_committed,
)
from tests.support.processes import free_port
from tests.support.wal import WalProducer, wal_event

BACKLOG = int(os.environ.get("BENCH_REPLICATION_EVENTS", "30000"))
RATES = [int(r) for r in os.environ.get("BENCH_REPLICATION_RATES", "500,2000").split(",")]
SECONDS = float(os.environ.get("BENCH_REPLICATION_SECONDS", "20"))


def feed(settings: Settings, rate: int, seconds: float, tag: str) -> None:
    """`rate` WAL records per second for `seconds`, in 10 slices a second."""
    producer = WalProducer(settings)
    step, n, started = rate // 10, 0, time.monotonic()
    while time.monotonic() - started < seconds:
        producer.send(wal_event(f"{tag}{n % 20}", n + i) for i in range(step))
        producer.flush()
        n += step
        pause = started + n / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)  # pacing the load, not awaiting a condition


def lag_while(worker: WorkerProcess, running: threading.Event) -> list[tuple[float, int]]:
    samples = []
    while running.is_set():
        lag = worker.get("/health", internal=False).json()["lag"]
        if "seconds" in lag:
            samples.append((float(lag["seconds"]), int(lag["offsets"])))
        time.sleep(0.5)
    return samples


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = isolated_settings(stack_dir=Path(tmp))
        app_id = f"{settings.topic_prefix}bench-replication"
        create_topics(settings, ("memory.wal", "memory.wal.dlq"))
        worker = WorkerProcess(
            "replication", settings, app_id, free_port(), Path(tmp) / "w", Path(tmp) / "w.log"
        )
        wal = settings.topic_prefix + "memory.wal"
        try:
            worker.start().wait_ready()
            producer = WalProducer(settings)
            began = time.perf_counter()
            producer.send(wal_event(f"backlog{n % 20}", n) for n in range(BACKLOG))
            producer.flush()
            wait_committed(settings, app_id, wal, timeout_s=900)
            backlog_rate = BACKLOG / (time.perf_counter() - began)
            print(f"replication into the replica (Postgres), one worker, {BACKLOG} records")
            print(f"  backlog (produce + replicate + commit): {backlog_rate:8,.0f} events/s")
            for rate in RATES:
                running = threading.Event()
                running.set()
                samples: list[tuple[float, int]] = []

                def sample(into: list[tuple[float, int]] = samples, on: threading.Event = running):
                    into.extend(lag_while(worker, on))

                sampler = threading.Thread(target=sample, daemon=True)
                sampler.start()
                feed(settings, rate, SECONDS, f"r{rate}-")
                stopped = time.perf_counter()
                wait_committed(settings, app_id, wal, timeout_s=900)
                drained = time.perf_counter() - stopped
                running.clear()
                sampler.join()
                seconds = sorted(s for s, _ in samples) or [0.0]
                offsets = [o for _, o in samples] or [0]
                p50, p95 = statistics.median(seconds), seconds[int(len(seconds) * 0.95)]
                print(
                    f"  steady {rate:5}/s for {SECONDS:.0f} s: lag p50 {p50:5.2f} s, "
                    f"p95 {p95:5.2f} s, max {seconds[-1]:5.2f} s, max {max(offsets)} records; "
                    f"committed {drained:.1f} s after the load stopped"
                )
        finally:
            worker.stop()
            delete_test_topics(settings, app_id)


if __name__ == "__main__":
    main()
