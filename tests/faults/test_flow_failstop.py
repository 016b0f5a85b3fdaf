"""A batch whose commit steps fail stops the worker before its events are acked."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from flows.failpoints import AFTER_OUTPUTS_DURABLE
from flows.kit.commit import EXIT_BATCH_FAILED
from soma.settings import Settings
from tests.support.flows import (
    TestProducer,
    WorkerProcess,
    group_lag,
    wait_committed,
    wait_until,
)

pytestmark = pytest.mark.fault


def test_a_failing_commit_step_exits_without_committing(
    flow_stack: tuple[Settings, str], flow_worker_factory: Callable[..., WorkerProcess]
) -> None:
    settings, app_id = flow_stack
    producer = TestProducer(settings)
    producer.send([("acme", "s1")] * 10)
    producer.flush()

    # The commit step raises (as a broker refusing a changelog record would): the kit must
    # end the process rather than let Faust's take() ack the batch on its way out.
    worker = flow_worker_factory("state", failpoint=f"{AFTER_OUTPUTS_DURABLE}:1:raise")
    assert worker.wait_exit(timeout_s=60) == EXIT_BATCH_FAILED
    assert "FailpointError" in worker.log_path.read_text()
    source = settings.topic_prefix + "conversation.inbound"
    assert group_lag(settings, app_id, source) == 10, "the failed batch must not be committed"

    # Restarted without the failpoint, it counts the batch exactly once.
    again = flow_worker_factory("state").wait_ready()
    wait_committed(settings, app_id, source)
    count = wait_until(
        lambda: again.get("/state/session-counts/acme%2Fs1").json().get("count"),
        timeout_s=30,
        what="the count",
    )
    assert count == 10
