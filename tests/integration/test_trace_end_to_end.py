"""One trace from the caller to the memory service: gateway request → record headers → the
write-through flow's processing of that event → the SomaBrain call, with X-Request-Id alongside.

How the spans are collected (two processes, so two exporters, one trace):
- the gateway runs in this test's process; its spans go to an in-memory exporter (its request
  span is FastAPI's own SERVER span, which the gateway adopts as its hop: exactly one);
- the write-through worker is the real worker process (`soma flow run write-through`), started
  with `SOMA_TRACES_FILE`, so soma/tracing.py appends each span it ends to a JSON-lines file
  that the test reads. Nothing is run in-process on the flow side and no span is made up here:
  the test only joins what the two processes exported, by trace and parent ids.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from soma.settings import Settings
from tests.conftest import AuthHeaders, SettingsFactory
from tests.integration.conftest import GatewayClient, KafkaReader
from tests.support.flows import WorkerProcess
from tests.support.processes import free_port, wait_until
from tests.support.somabrain import StandIn

pytestmark = [pytest.mark.integration]

CALLER_TRACE, CALLER_SPAN = uuid.uuid4().hex, uuid.uuid4().hex[:16]


@pytest.fixture
def gateway_spans() -> Iterator[InMemorySpanExporter]:
    """Spans this process records from now on (the gateway's)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)  # once per process; later tests add processors
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


def worker_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def header(message: Any, name: str) -> str | None:
    for key, value in message.headers() or []:
        if key == name:
            return str(value.decode())
    return None


async def test_one_trace_covers_gateway_flow_and_memory_service(
    write_through_stack: tuple[Settings, str],
    standin: StandIn,
    tmp_path: Path,
    settings_factory: SettingsFactory,
    gateway_client: GatewayClient,
    auth_headers: AuthHeaders,
    kafka_reader: KafkaReader,
    gateway_spans: InMemorySpanExporter,
) -> None:
    settings, app_id = write_through_stack
    traces = tmp_path / "worker-spans.jsonl"
    env = {
        "SOMA_BASE_URL": standin.url,
        "SOMA_API_TOKEN": standin.token,
        "SOMA_TRACES_FILE": str(traces),
    }
    worker = WorkerProcess(
        "write-through",
        settings,
        app_id,
        free_port(),
        tmp_path / "wt",
        tmp_path / "wt.log",
        env=env,
    ).start()
    try:
        worker.wait_ready()
        gateway = settings_factory(topic_prefix=settings.topic_prefix, stack_dir=settings.stack_dir)
        tenant, request_id = f"tr{uuid.uuid4().hex[:8]}", f"req-{uuid.uuid4().hex}"
        async with gateway_client(gateway) as client:
            answer = await client.post(
                "/v1/memory/remember",
                json={"session_id": "s1", "payload": {"fact": "herons fish at dawn"}},
                headers={
                    **auth_headers(gateway, tenant),
                    "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01",
                    "X-Request-Id": request_id,
                },
            )
        assert answer.status_code == 202, answer.text
        assert answer.headers["x-request-id"] == request_id

        # 1. The gateway's SERVER span: a child of the caller's span, in the caller's trace.
        servers = [s for s in gateway_spans.get_finished_spans() if s.kind is SpanKind.SERVER]
        assert len(servers) == 1, [(s.name, s.instrumentation_scope.name) for s in servers]
        (server,) = servers
        assert server.parent is not None and f"{server.parent.span_id:016x}" == CALLER_SPAN
        assert f"{server.context.trace_id:032x}" == CALLER_TRACE
        assert server.attributes is not None
        assert server.attributes["soma.request_id"] == request_id
        gateway_span = f"{server.context.span_id:016x}"
        assert answer.headers["traceparent"] == f"00-{CALLER_TRACE}-{gateway_span}-01"

        # 2. The record carries that span as its traceparent, and the request id beside it.
        (record,) = kafka_reader(settings, settings.topic_prefix + "memory.requests")
        assert header(record, "traceparent") == f"00-{CALLER_TRACE}-{gateway_span}-01"
        assert header(record, "request_id") == request_id

        # 3. The worker's spans: processing that event, then the call to the memory service.
        def exported() -> bool:
            names = {s["name"] for s in worker_spans(traces)}
            return "write-through process" in names and any(n.startswith("POST") for n in names)

        wait_until(exported, timeout_s=60, what=f"worker spans in {traces}")
        spans = [s for s in worker_spans(traces) if s["context"]["trace_id"] == f"0x{CALLER_TRACE}"]
        (process,) = [s for s in spans if s["name"] == "write-through process"]
        assert process["kind"] == "SpanKind.CONSUMER"
        assert process["parent_id"] == f"0x{gateway_span}"
        assert process["attributes"]["soma.request_id"] == request_id
        assert process["attributes"]["soma.outcome"] == "wal"
        (call,) = [s for s in spans if s["name"] == "POST /memory/remember/batch"]
        assert call["kind"] == "SpanKind.CLIENT"
        assert call["parent_id"] == process["context"]["span_id"]
        assert call["attributes"]["soma.tenant"] == tenant

        # ... and the memory service was asked within that trace.
        calls = [r for r in standin.requests("/memory/remember/batch") if r]
        sent = [r.get("headers", {}).get("traceparent", "") for r in calls]
        assert f"00-{CALLER_TRACE}-{call['context']['span_id'][2:]}-01" in sent, sent
    finally:
        worker.stop()
