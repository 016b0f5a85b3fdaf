"""SomaBrainClient under faults of the stand-in: retries, Retry-After, breaker, probe, /link 404."""

from __future__ import annotations

import time
import uuid
import warnings
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from processors.backend_policy import BreakerPolicy, BreakerState, HealthMode, ProbePolicy
from processors.memory import MemoryLink, MemoryWrite, RecallQuery
from processors.memory_keys import MemoryScope
from processors.tracing import new_traceparent
from soma.settings import Settings
from state.memory.errors import BackendRejected, BackendUnavailable
from state.memory.health import HealthMonitor
from state.memory.links import PostgresLinkStore
from state.memory.pg import make_pool
from state.memory.somabrain import SomaBrainClient
from tests.support.processes import free_port
from tests.support.somabrain import StandIn

pytestmark = pytest.mark.fault
ScopeFactory = Callable[..., MemoryScope]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Harness:
    """A client on the stand-in with a fake clock and a sleep that records instead of waiting."""

    def __init__(self, settings: Settings, url: str, token: str, **kwargs: Any) -> None:
        self.clock, self.sleeps = FakeClock(), []
        self.spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.spans))
        monitor = HealthMonitor(
            "somabrain",
            breaker=BreakerPolicy(failure_threshold=3, reset_timeout_s=15),
            probe=ProbePolicy(timeout_s=1.0),
            clock=self.clock,
        )

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        self.client = SomaBrainClient(
            url,
            links=PostgresLinkStore(make_pool(settings.postgres_dsn, max_size=2), owns_pool=True),
            token=token,
            monitor=monitor,
            sleep=sleep,
            rand=lambda: 0.5,
            tracer_provider=provider,
            **kwargs,
        )


@pytest.fixture
async def harness(memory_schema: Settings, standin: StandIn) -> AsyncIterator[Harness]:
    made = Harness(memory_schema, standin.url, standin.token)
    yield made
    await made.client.aclose()


def a_write(scope: MemoryScope, text: str = "a note about herons", **kwargs: Any) -> MemoryWrite:
    return MemoryWrite.for_event(scope, uuid.uuid4().hex, {"text": text}, **kwargs)


async def test_every_call_carries_tenant_request_id_trace_and_token(
    harness: Harness, standin: StandIn, scope_factory: ScopeFactory
) -> None:
    scope, parent = scope_factory(), new_traceparent()
    await harness.client.remember(a_write(scope, traceparent=parent.header()))
    sent = standin.requests("/memory/remember")[-1]["headers"]
    assert sent["x-tenant-id"] == scope.tenant
    assert len(sent["x-request-id"]) == 32
    assert sent["authorization"] == f"Bearer {standin.token}"
    version, trace_id, span_id, _ = sent["traceparent"].split("-")
    assert (version, trace_id) == ("00", parent.trace_id) and span_id != parent.span_id
    (span,) = harness.spans.get_finished_spans()
    assert span.kind is SpanKind.CLIENT and span.name == "POST /memory/remember"
    assert format(span.context.span_id, "016x") == span_id
    assert span.attributes is not None and span.attributes["http.response.status_code"] == 200


async def test_429_waits_what_retry_after_says_capped_at_120s(
    harness: Harness, standin: StandIn, scope_factory: ScopeFactory
) -> None:
    standin.fault("rate_limited", count=1, retry_after="7")
    await harness.client.remember(a_write(scope_factory()))
    standin.fault("rate_limited", count=1, retry_after="600")
    await harness.client.remember(a_write(scope_factory()))
    assert harness.sleeps == [7.0, 120.0]
    assert harness.client.monitor.breaker.state is BreakerState.CLOSED  # back-pressure only


async def test_503_breaker_open_and_502_are_retried_with_jitter(
    harness: Harness, standin: StandIn, scope_factory: ScopeFactory
) -> None:
    standin.fault("breaker_open", count=1, retry_after="3")
    await harness.client.remember(a_write(scope_factory()))
    standin.fault("bad_gateway", count=1)
    await harness.client.remember(a_write(scope_factory()))
    # Retry-After from the 503, then full jitter (rand pinned to 0.5) of the 0.2 s base.
    assert harness.sleeps == [3.0, pytest.approx(0.1)]


async def test_breaker_opens_after_three_failures_and_half_opens_after_reset(
    harness: Harness, standin: StandIn, scope_factory: ScopeFactory
) -> None:
    standin.fault("bad_gateway")
    with pytest.raises(BackendUnavailable) as failed:
        await harness.client.remember(a_write(scope_factory()))
    assert failed.value.reason == "server_error" and failed.value.status == 502
    assert harness.client.monitor.breaker.state is BreakerState.OPEN
    sent = len(standin.requests("/memory/remember"))
    assert sent >= 3
    with pytest.raises(BackendUnavailable) as refused:
        await harness.client.remember(a_write(scope_factory()))
    assert refused.value.reason == "circuit_open" and refused.value.retry_after_s == 15
    assert len(standin.requests("/memory/remember")) == sent  # refused without a request
    assert (await harness.client.health()).mode is HealthMode.DOWN
    standin.fault("none")
    harness.clock.now += 15
    await harness.client.remember(a_write(scope_factory()))  # the half-open trial succeeds
    assert harness.client.monitor.breaker.state is BreakerState.CLOSED
    assert (await harness.client.health()).mode is HealthMode.NORMAL


async def test_a_service_that_is_down_is_unavailable_fast(
    memory_schema: Settings, scope_factory: ScopeFactory
) -> None:
    harness = Harness(memory_schema, f"http://127.0.0.1:{free_port()}", "t")
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as caught:
        await harness.client.remember(a_write(scope_factory()))
    assert caught.value.reason == "connect"
    health = await harness.client.health()
    assert health.mode is HealthMode.DOWN
    assert time.monotonic() - started < 1.5
    await harness.client.aclose()


async def test_a_slow_service_is_down_within_the_probe_timeout(
    harness: Harness, standin: StandIn
) -> None:
    standin.fault("slow", delay_s=3, paths=["/healthz"])
    started = time.monotonic()
    health = await harness.client.health()
    assert health.mode is HealthMode.DOWN and "timed out" in health.detail
    assert time.monotonic() - started < 1.5


async def test_store_down_fails_batches_and_readyz_though_health_says_200(
    harness: Harness, standin: StandIn, scope_factory: ScopeFactory
) -> None:
    standin.fault("store_down")
    with pytest.raises(BackendUnavailable) as caught:
        await harness.client.remember_batch([a_write(scope_factory())])
    assert caught.value.status == 503
    health = await harness.client.health()
    assert health.mode is HealthMode.DOWN and "readyz" in health.detail


async def test_links_survive_a_service_without_link_api(
    harness: Harness, standin: StandIn, scope_factory: ScopeFactory
) -> None:
    scope = scope_factory()
    one, two, three = (a_write(scope, f"turn {i}") for i in range(3))
    await harness.client.remember_batch([one, two, three])
    for target in (one, three):
        await harness.client.link(MemoryLink(scope.tenant, scope.namespace, two.key, target.key))
    assert harness.client.link_api is False
    # Detected once (the stand-in serves the whole session: count this tenant's calls only).
    mine = [r for r in standin.requests("/link") if r["headers"].get("x-tenant-id") == scope.tenant]
    assert len(mine) == 1
    assert [edge.to_key for edge in await harness.client.links(scope, two.key)] == [
        one.key,
        three.key,
    ]
    assert "no /link" in (await harness.client.health()).detail


async def test_a_validation_error_is_rejected_naming_the_field(
    harness: Harness, scope_factory: ScopeFactory
) -> None:
    write = a_write(scope_factory())
    object.__setattr__(write, "ttl_seconds", -1)  # bypass our check to see the service's 422
    with pytest.raises(BackendRejected) as caught:
        await harness.client.remember(write)
    assert caught.value.field == "ttl_seconds" and caught.value.status == 422
    assert harness.sleeps == []  # never retried


async def test_a_wrong_token_is_unavailable_not_retried(
    memory_schema: Settings, standin: StandIn, scope_factory: ScopeFactory
) -> None:
    harness = Harness(memory_schema, standin.url, "not-the-token")
    with pytest.raises(BackendUnavailable) as caught:
        await harness.client.remember(a_write(scope_factory()))
    assert caught.value.reason == "unauthorized" and caught.value.status == 401
    assert harness.sleeps == []
    await harness.client.aclose()


async def test_paths_under_api_answer_the_same(
    memory_schema: Settings, standin: StandIn, scope_factory: ScopeFactory
) -> None:
    harness = Harness(memory_schema, f"{standin.url}/api", standin.token)
    scope = scope_factory()
    await harness.client.remember(a_write(scope, "an ibis at dawn"))
    hits = await harness.client.recall(RecallQuery(scope.tenant, scope.namespace, "ibis"))
    assert len(hits) == 1 and hits[0].coordinate is not None and len(hits[0].coordinate) == 3
    assert standin.requests("/api/memory/recall")
    await harness.client.aclose()


async def test_unscoped_keys_would_collide_across_tenants_ours_do_not(
    harness: Harness, standin: StandIn, scope_factory: ScopeFactory
) -> None:
    alice, bob = scope_factory(), scope_factory()
    await harness.client.remember(MemoryWrite.for_event(alice, "shared", {"text": "alice"}))
    await harness.client.remember(MemoryWrite.for_event(bob, "shared", {"text": "bob"}))
    stored = {i["key"]: i["tenant"] for i in standin.items()}
    assert stored[f"{alice.prefix}shared"] == alice.tenant
    assert stored[f"{bob.prefix}shared"] == bob.tenant


async def test_embed_then_remember_sends_the_vector(
    harness: Harness, standin: StandIn, scope_factory: ScopeFactory
) -> None:
    async def embed(text: str) -> list[float]:
        return [float(len(text)), 0.5]

    await harness.client.embed_then_remember(a_write(scope_factory(), "abc"), embed)
    assert '"embedding":[3.0,0.5]' in standin.requests("/memory/remember")[-1]["body"]


def test_somaclient_is_a_deprecated_alias_that_warns_once(memory_schema: Settings) -> None:
    from state.memory import somabrain

    somabrain._warned = False
    links = PostgresLinkStore(make_pool(memory_schema.postgres_dsn), owns_pool=True)
    with pytest.warns(DeprecationWarning, match="SomaBrainClient"):
        first = somabrain.SomaClient("http://127.0.0.1:1", links=links)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = somabrain.SomaClient("http://127.0.0.1:1", links=links)
    assert isinstance(first, SomaBrainClient) and isinstance(second, SomaBrainClient)
