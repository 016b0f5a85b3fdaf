"""Fixtures for flow tests on the real broker: a fresh topic set and group, and worker processes."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from soma.settings import Settings
from tests.support.flows import (
    WorkerProcess,
    create_topics,
    delete_test_topics,
    isolated_settings,
)
from tests.support.memory_fixtures import (  # noqa: F401  (fixtures)
    memory_schema,
    scope_factory,
    somabrain_standin,
    standin,
)
from tests.support.processes import free_port


@pytest.fixture
def flow_stack(tmp_path: Path) -> Iterator[tuple[Settings, str]]:
    """(settings with a fresh topic prefix, a fresh app id / consumer group)."""
    settings = isolated_settings(stack_dir=tmp_path)
    app_id = f"flow-{uuid.uuid4().hex[:10]}"
    create_topics(settings, ("conversation.inbound", "conversation.inbound.dlq"))
    yield settings, app_id
    import os

    if os.environ.get("KEEP_TOPICS"):
        print("KEPT", settings.topic_prefix, app_id)
        return
    delete_test_topics(settings, app_id)


@pytest.fixture
def flow_worker_factory(
    flow_stack: tuple[Settings, str], tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers of the test's group: `make(data_dir_name, failpoint=...)`; stopped after."""
    settings, app_id = flow_stack
    started: list[WorkerProcess] = []

    def make(
        data_dir: str, name: str = "session-counts", failpoint: str | None = None
    ) -> WorkerProcess:
        worker = WorkerProcess(
            name,
            settings,
            app_id,
            free_port(),
            tmp_path / data_dir,
            tmp_path / f"{data_dir}.log",
            failpoint=failpoint,
        )
        started.append(worker.start())
        return worker

    yield make
    for worker in started:
        worker.stop()


@pytest.fixture
def session_counts_group(tmp_path: Path) -> Iterator[tuple[Settings, str]]:
    """Fresh topics for session-counts, test JWT keys, and the flow's default group under the
    prefix (the group the gateway's state reads look for)."""
    from tests.conftest import TEST_JWT_KEYS

    settings = isolated_settings(stack_dir=tmp_path, jwt_keys=TEST_JWT_KEYS, jwt_active_kid="k2")
    app_id = f"{settings.topic_prefix}soma-session-counts"
    create_topics(settings, ("conversation.inbound", "conversation.inbound.dlq"))
    yield settings, app_id
    import os

    if os.environ.get("KEEP_TOPICS"):
        print("KEPT", settings.topic_prefix, app_id)
        return
    delete_test_topics(settings, app_id)


@pytest.fixture
def write_through_stack(tmp_path: Path) -> Iterator[tuple[Settings, str]]:
    """(settings with a fresh topic prefix and every write-through topic, a fresh app id)."""
    from tests.support.write_through import TOPICS

    settings = isolated_settings(stack_dir=tmp_path)
    app_id = f"wt-{uuid.uuid4().hex[:10]}"
    create_topics(settings, TOPICS)
    yield settings, app_id
    delete_test_topics(settings, app_id)


@pytest.fixture
def write_through_worker_factory(
    write_through_stack: tuple[Settings, str], tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """`make(data_dir_name, env={...}, failpoint=None)`: write-through workers, stopped after."""
    settings, app_id = write_through_stack
    started: list[WorkerProcess] = []

    def make(
        data_dir: str, env: dict[str, str] | None = None, failpoint: str | None = None
    ) -> WorkerProcess:
        worker = WorkerProcess(
            "write-through",
            settings,
            app_id,
            free_port(),
            tmp_path / data_dir,
            tmp_path / f"{data_dir}.log",
            failpoint=failpoint,
            env=env or {},
        )
        started.append(worker.start())
        return worker

    yield make
    for worker in started:
        worker.stop()
