"""Fixtures for memory-backend tests (imported by the integration and fault conftests)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from processors.memory_keys import MemoryScope
from soma.settings import Settings
from state.memory.migrate import upgrade
from tests.support.somabrain import StandIn


@pytest.fixture(scope="session")
def memory_schema() -> Settings:
    """The memory tables exist (as `soma db upgrade` makes them; harmless when current)."""
    settings = Settings()
    upgrade(settings.postgres_dsn)
    return settings


@pytest.fixture(scope="session")
def somabrain_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    """One SomaBrain stand-in process for the session; faults are reset around each test."""
    started = StandIn().start(tmp_path_factory.mktemp("standin") / "standin.log")
    yield started
    started.stop()


@pytest.fixture
def standin(somabrain_standin: StandIn) -> Iterator[StandIn]:
    """The session's stand-in with no fault on and the observed /link behaviour (404)."""
    somabrain_standin.fault("none")
    somabrain_standin.link_api(False)
    yield somabrain_standin
    somabrain_standin.fault("none")
    somabrain_standin.link_api(False)


@pytest.fixture
def scope_factory() -> Callable[..., MemoryScope]:
    """`scope_factory(namespace="wm", universe="default")`: a scope of a fresh tenant."""

    def make(namespace: str = "wm", universe: str = "default") -> MemoryScope:
        return MemoryScope(f"t-{uuid.uuid4().hex[:12]}", namespace, universe)

    return make
