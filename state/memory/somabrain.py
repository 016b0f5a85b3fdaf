"""SomaBrainClient: the memory backend on SomaBrain's HTTP API, as the real service answers."""

from __future__ import annotations

import asyncio
import logging
import random
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from itertools import groupby
from typing import Any, TypeVar

import httpx
from opentelemetry.trace import TracerProvider

from processors.backend_policy import RETRY_UPSTREAM, BackendHealth, RetryPolicy
from processors.memory import (
    MemoryLink,
    MemoryWrite,
    RecallHit,
    RecallQuery,
    RememberResult,
    memory_text,
)
from processors.memory_keys import MemoryScope
from soma import metrics
from state.memory import somabrain_body as body
from state.memory.errors import BackendUnavailable, OperationUnsupported
from state.memory.health import HealthMonitor
from state.memory.links import PostgresLinkStore
from state.memory.retry import Sleep, call_with_retries
from state.memory.somabrain_http import BACKEND, Reply, SomaBrainTransport

log = logging.getLogger(__name__)
T = TypeVar("T")
Embed = Callable[[str], Awaitable[Sequence[float]]]


class SomaBrainClient:
    """MemoryBackend over SomaBrain; links live in our Postgres link table.

    The observed service has no /link (404): the first 404 is remembered, said in health and
    in a metric, and every link is kept in `links` (Postgres) whatever the service does, so
    a link never fails a write. `deduplicated` is reported as None: the service always says
    false. Idempotency comes from the key: a replay overwrites the same coordinate with the
    same content.
    """

    name = BACKEND

    def __init__(
        self,
        base_url: str,
        *,
        links: PostgresLinkStore,
        token: str | None = None,
        timeout_s: float = 5.0,
        retry: RetryPolicy = RETRY_UPSTREAM,
        monitor: HealthMonitor | None = None,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        tracer_provider: TracerProvider | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = SomaBrainTransport(
            base_url,
            token=token,
            timeout_s=timeout_s,
            tracer_provider=tracer_provider,
            transport=transport,
        )
        self._links = links
        self._retry, self._sleep, self._rand = retry, sleep, rand
        self.monitor = monitor or HealthMonitor(BACKEND)
        self.link_api: bool | None = None  # None until the service said whether it has /link
        metrics.MEMORY_BACKEND_LINKS_LOCAL.labels(BACKEND).set(1)

    async def remember(self, write: MemoryWrite) -> RememberResult:
        reply = await self._call(
            "remember",
            "/memory/remember",
            body.remember(write),
            tenant=write.tenant,
            traceparent=write.traceparent,
        )
        return body.remember_result(write, reply.body, reply.request_id)

    async def embed_then_remember(self, write: MemoryWrite, embed: Embed) -> RememberResult:
        """Embed the write's text with `embed`, then remember it with that vector attached.

        The service's write model takes a precomputed `embedding` and stores it instead of
        computing its own; an agent that already embedded the text saves the service the work.
        """
        vector = [float(x) for x in await embed(memory_text(write.value))]
        payload = body.remember(write) | {"embedding": vector}
        reply = await self._call(
            "remember",
            "/memory/remember",
            payload,
            tenant=write.tenant,
            traceparent=write.traceparent,
        )
        return body.remember_result(write, reply.body, reply.request_id)

    async def remember_batch(self, writes: Sequence[MemoryWrite]) -> list[RememberResult]:
        """One request per (tenant, namespace): the batch API takes one of each per call."""
        results: dict[int, RememberResult] = {}
        indexed = sorted(enumerate(writes), key=lambda iw: (iw[1].tenant, iw[1].namespace))
        for (tenant, _), group in groupby(indexed, key=lambda iw: (iw[1].tenant, iw[1].namespace)):
            members = list(group)
            batch = [w for _, w in members]
            reply = await self._call(
                "remember_batch",
                "/memory/remember/batch",
                body.remember_batch(batch),
                tenant=tenant,
                traceparent=batch[0].traceparent,
            )
            for (index, _write), result in zip(
                members, body.batch_results(batch, reply.body, reply.request_id), strict=True
            ):
                results[index] = result
        return [results[i] for i in range(len(writes))]

    async def link(self, link: MemoryLink) -> None:
        await self._links.link(link)  # ours first: the record that `links` answers from
        if self.link_api is False:
            return
        try:
            await self._call(
                "link", "/link", body.link(link), tenant=link.tenant, attempts_override=1
            )
            self.link_api = True
        except OperationUnsupported:
            self.link_api = False
            self.monitor.notes["links"] = "links kept in Postgres: the service has no /link (404)"
            log.warning("somabrain: /link answered 404; links are kept in Postgres only")
        except BackendUnavailable as exc:
            # Stored on our side already; the service's copy is best effort.
            log.warning("somabrain: /link failed (%s); the link is kept in Postgres", exc.reason)
        else:
            metrics.MEMORY_BACKEND_LINKS_LOCAL.labels(BACKEND).set(0)

    async def links(self, scope: MemoryScope, from_key: str) -> list[MemoryLink]:
        return await self._links.links(scope, from_key)

    async def recall(self, query: RecallQuery) -> list[RecallHit]:
        reply = await self._call(
            "recall", "/memory/recall", body.recall(query), tenant=query.tenant
        )
        return body.recall_hits(query, reply.body)

    async def recall_stream(self, query: RecallQuery) -> AsyncIterator[RecallHit]:
        # top_k is at most 50: one answer holds them all, so the stream is that answer's hits.
        for hit in await self.recall(query):
            yield hit

    async def health(self) -> BackendHealth:
        return await self.monitor.probe(self._probe)

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._links.aclose()

    async def _probe(self) -> str:
        # /health answers 200 even with ok:false; /healthz and /readyz say it with the status.
        timeout = self.monitor.probe_policy.timeout_s
        started = time.monotonic()
        live, ready = await asyncio.gather(
            self._http.get("/healthz", timeout_s=timeout),
            self._http.get("/readyz", timeout_s=timeout),
        )
        for name, response in (("healthz", live), ("readyz", ready)):
            if response.status_code != 200:
                raise BackendUnavailable(
                    f"somabrain /{name} answered {response.status_code}",
                    backend=BACKEND,
                    reason="probe",
                    status=response.status_code,
                )
        return f"somabrain ok ({(time.monotonic() - started) * 1000:.0f} ms)"

    async def _call(
        self,
        operation: str,
        path: str,
        payload: dict[str, Any],
        *,
        tenant: str,
        traceparent: str | None = None,
        attempts_override: int | None = None,
    ) -> Reply:
        async def once() -> Reply:
            return await self.monitor.call(
                operation,
                lambda: self._http.post(path, payload, tenant=tenant, traceparent=traceparent),
            )

        def count(exc: BackendUnavailable, _delay: float) -> None:
            metrics.MEMORY_BACKEND_RETRIES.labels(BACKEND, operation, exc.reason).inc()

        policy = self._retry
        if attempts_override is not None:
            policy = RetryPolicy(
                attempts_override, policy.base_s, policy.cap_s, policy.retry_after_cap_s
            )
        return await call_with_retries(
            policy, once, sleep=self._sleep, rand=self._rand, on_retry=count
        )


_warned = False


class SomaClient(SomaBrainClient):
    """Deprecated name of SomaBrainClient (upstream's); warns once per process."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        global _warned
        if not _warned:
            _warned = True
            warnings.warn(
                "SomaClient is deprecated: use state.memory.somabrain.SomaBrainClient",
                DeprecationWarning,
                stacklevel=2,
            )
        super().__init__(*args, **kwargs)
