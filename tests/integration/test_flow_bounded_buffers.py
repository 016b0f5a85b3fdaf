"""A flow worker's buffers hold no more than their settings allow, and back-pressure loses nothing.

A session-counts worker whose stream buffer holds 16 records works through a backlog of 3,000:
everything is committed, and the worker's own metrics say its buffers never held more than
their bounds.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from processors.policies import BATCH_DEFAULT
from soma.settings import Settings
from tests.support.flows import (
    TestProducer,
    WorkerProcess,
    create_topics,
    delete_test_topics,
    isolated_settings,
    wait_committed,
)
from tests.support.processes import free_port

pytestmark = pytest.mark.integration

STREAM_BUFFER = 16
EVENTS = 3000


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[tuple[Settings, WorkerProcess]]:
    settings = isolated_settings(stack_dir=tmp_path)
    app_id = f"bq-{uuid.uuid4().hex[:10]}"
    create_topics(settings, ("conversation.inbound", "conversation.inbound.dlq"))
    worker = WorkerProcess(
        "session-counts",
        settings,
        app_id,
        free_port(),
        tmp_path / "w1",
        tmp_path / "w1.log",
        env={"SOMA_FLOW_STREAM_BUFFER_MAX": str(STREAM_BUFFER)},
    )
    try:
        yield settings, worker
    finally:
        worker.stop()
        delete_test_topics(settings, app_id)


def _queues(worker: WorkerProcess) -> dict[tuple[str, str], float]:
    text = httpx.get(f"{worker.url}/metrics", timeout=5).text
    return {
        (sample.name, sample.labels["queue"]): sample.value
        for family in text_string_to_metric_families(text)
        if family.name.startswith("soma_queue_")
        for sample in family.samples
    }


def test_stream_buffer_stays_within_its_bound_through_a_backlog(
    worker: tuple[Settings, WorkerProcess],
) -> None:
    settings, process = worker
    producer = TestProducer(settings)
    producer.send((f"acme{i % 5}", f"s{i % 40}") for i in range(EVENTS))
    producer.flush()
    process.start().wait_ready()
    wait_committed(settings, process.app_id, settings.topic_prefix + "conversation.inbound")

    queues = _queues(process)
    assert queues[("soma_queue_capacity", "flow_stream_buffer")] == STREAM_BUFFER
    # The backlog is far larger than the buffer: it fills up to its bound, and no further.
    assert queues[("soma_queue_high_water", "flow_stream_buffer")] == STREAM_BUFFER
    assert queues[("soma_queue_capacity", "flow_batch_buffer")] == BATCH_DEFAULT.max_events
    assert 1 <= queues[("soma_queue_high_water", "flow_batch_buffer")] <= BATCH_DEFAULT.max_events
    assert queues[("soma_queue_capacity", "flow_producer")] == settings.producer_queue_max_messages
    assert (
        queues[("soma_queue_high_water", "flow_producer")] <= settings.producer_queue_max_messages
    )
    assert queues[("soma_queue_depth", "flow_batch_buffer")] == 0  # caught up: no batch in hand
