"""One contract, every memory backend: Postgres (real) and SomaBrainClient (on the stand-in)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest

from processors.backend_policy import HealthMode
from processors.memory import MemoryLink, MemoryWrite, RecallQuery
from processors.memory_keys import MemoryScope
from soma.settings import Settings
from state.memory.backend import MemoryBackend
from tests.integration.memory_backends import IMPLEMENTATIONS, build_backend
from tests.support.somabrain import StandIn

pytestmark = pytest.mark.integration
ScopeFactory = Callable[..., MemoryScope]


@pytest.fixture(params=IMPLEMENTATIONS)
async def backend(
    request: pytest.FixtureRequest, memory_schema: Settings, standin: StandIn
) -> AsyncIterator[MemoryBackend]:
    built = build_backend(request.param, memory_schema, standin)
    assert built.name == request.param
    yield built
    await built.aclose()


def write(scope: MemoryScope, text: str, key: str | None = None, **kwargs: object) -> MemoryWrite:
    return MemoryWrite.for_event(scope, key or uuid.uuid4().hex, {"text": text}, **kwargs)  # type: ignore[arg-type]


def query(scope: MemoryScope, text: str, **kwargs: object) -> RecallQuery:
    return RecallQuery(scope.tenant, scope.namespace, text, universe=scope.universe, **kwargs)  # type: ignore[arg-type]


async def test_a_remembered_write_is_recalled(
    backend: MemoryBackend, scope_factory: ScopeFactory
) -> None:
    scope = scope_factory()
    memory = write(scope, "the heron stands in the shallow river")
    result = await backend.remember(memory)
    assert result.key == memory.key and result.backend == backend.name
    hits = await backend.recall(query(scope, "heron river"))
    assert [h.key for h in hits] == [memory.key]
    assert hits[0].value["text"] == "the heron stands in the shallow river"
    assert hits[0].score > 0


async def test_remember_is_idempotent_on_the_key(
    backend: MemoryBackend, scope_factory: ScopeFactory
) -> None:
    scope = scope_factory()
    memory = write(scope, "a replayed event about otters", key="s1/user/1")
    first, second = await backend.remember(memory), await backend.remember(memory)
    hits = await backend.recall(query(scope, "otters", top_k=10))
    assert [h.key for h in hits] == [memory.key]
    if backend.name == "postgres":
        assert (first.deduplicated, second.deduplicated) == (False, True)
    else:  # the service always answers false: not evidence, so reported as unknown
        assert first.deduplicated is None and second.deduplicated is None


async def test_batch_results_follow_the_input_order(
    backend: MemoryBackend, scope_factory: ScopeFactory
) -> None:
    scope = scope_factory()
    writes = [write(scope, f"lantern number {i}", key=f"k{i}") for i in range(6)]
    results = await backend.remember_batch([*writes, writes[2]])
    assert [r.key for r in results] == [w.key for w in [*writes, writes[2]]]
    if backend.name == "postgres":
        assert [r.deduplicated for r in results] == [False] * 6 + [True]
    hits = await backend.recall(query(scope, "lantern", top_k=50))
    assert sorted(h.key for h in hits) == sorted(w.key for w in writes)


async def test_tenants_never_see_each_other(
    backend: MemoryBackend, scope_factory: ScopeFactory
) -> None:
    alice, bob = scope_factory(), scope_factory()
    # The same idempotency key in two tenants: each keeps its own memory.
    await backend.remember(write(alice, "alice keeps a falcon", key="same/key"))
    await backend.remember(write(bob, "bob keeps a tortoise", key="same/key"))
    alice_hits = await backend.recall(query(alice, "falcon tortoise keeps", top_k=10))
    bob_hits = await backend.recall(query(bob, "falcon tortoise keeps", top_k=10))
    assert [h.value["text"] for h in alice_hits] == ["alice keeps a falcon"]
    assert [h.value["text"] for h in bob_hits] == ["bob keeps a tortoise"]


async def test_namespaces_and_universes_are_isolated(
    backend: MemoryBackend, scope_factory: ScopeFactory
) -> None:
    scope = scope_factory(namespace="wm", universe="u1")
    other_namespace = MemoryScope(scope.tenant, "ltm", "u1")
    other_universe = MemoryScope(scope.tenant, "wm", "u2")
    await backend.remember(write(scope, "a comet over the harbour"))
    assert await backend.recall(query(other_namespace, "comet harbour")) == []
    assert await backend.recall(query(other_universe, "comet harbour")) == []
    assert len(await backend.recall(query(scope, "comet harbour"))) == 1


async def test_recall_respects_top_k_and_ranks_best_first(
    backend: MemoryBackend, scope_factory: ScopeFactory
) -> None:
    scope = scope_factory()
    await backend.remember_batch([write(scope, f"maple leaf {i}") for i in range(5)])
    best = write(scope, "maple leaf syrup autumn")
    await backend.remember(best)
    hits = await backend.recall(query(scope, "maple syrup autumn", top_k=2))
    assert len(hits) == 2
    assert hits[0].key == best.key
    assert hits[0].score >= hits[1].score


async def test_recall_filters_min_score_age_and_session(
    backend: MemoryBackend, scope_factory: ScopeFactory
) -> None:
    scope = scope_factory()
    old = write(scope, "an old walrus story", occurred_at=datetime.now(UTC) - timedelta(hours=2))
    fresh = write(scope, "a fresh walrus story", session_id="s-1")
    await backend.remember_batch([old, fresh])
    recent = await backend.recall(query(scope, "walrus", max_age_seconds=600, top_k=10))
    assert [h.key for h in recent] == [fresh.key]
    in_session = await backend.recall(query(scope, "walrus story", session_id="s-1", top_k=10))
    assert [h.key for h in in_session] == [fresh.key]
    assert await backend.recall(query(scope, "walrus", min_score=1.5)) == []
    assert {h.key for h in await backend.recall(query(scope, "walrus", top_k=10))} == {
        old.key,
        fresh.key,
    }


async def test_recall_stream_yields_what_recall_returns(
    backend: MemoryBackend, scope_factory: ScopeFactory
) -> None:
    scope = scope_factory()
    await backend.remember_batch([write(scope, f"pebble beach {i}") for i in range(4)])
    listed = await backend.recall(query(scope, "pebble", top_k=3))
    streamed = [hit async for hit in backend.recall_stream(query(scope, "pebble", top_k=3))]
    assert [h.key for h in streamed] == [h.key for h in listed]
    assert len(streamed) == 3


async def test_links_are_kept_and_idempotent(
    backend: MemoryBackend, scope_factory: ScopeFactory
) -> None:
    scope = scope_factory()
    user, assistant = write(scope, "what is a quasar"), write(scope, "a very bright nucleus")
    await backend.remember_batch([user, assistant])
    edge = MemoryLink(
        scope.tenant, scope.namespace, assistant.key, user.key, "answers", 0.9, scope.universe
    )
    await backend.link(edge)
    await backend.link(edge)
    assert await backend.links(scope, assistant.key) == [edge]
    assert await backend.links(scope_factory(), assistant.key) == []


async def test_health_is_normal_when_the_backend_answers(backend: MemoryBackend) -> None:
    health = await backend.health()
    assert health.mode is HealthMode.NORMAL, health.detail
    assert health.latency_s is not None and health.latency_s < 1.0
    assert health.backend == backend.name
