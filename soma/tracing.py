"""OpenTelemetry in the plane's processes: off by default, exported as the OTEL_* variables say.

`configure_tracing(service)` runs once per process (the gateway, every flow worker). With
`OTEL_TRACES_EXPORTER` unset or `none` it does nothing: spans are not recorded, and the
`traceparent` headers the plane writes still carry one trace id from hop to hop (a fresh span
id per hop, processors/tracing.py). `otlp` exports over OTLP/HTTP, configured by the standard
variables (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME`, ...); `console` prints spans. One more,
not a standard one: `SOMA_TRACES_FILE=<path>` appends every finished span to a JSON-lines
file as it ends, which is how a test reads the spans of a worker process.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, TraceFlags

from processors.tracing import TraceParent, new_traceparent, parse_traceparent

log = logging.getLogger(__name__)

_configured = False


class JsonLinesSpanExporter(SpanExporter):
    """Every span as one JSON line (`ReadableSpan.to_json`, compacted) appended to a file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(json.loads(span.to_json())) + "\n" for span in spans)
        with self._lock, open(self.path, "a", encoding="utf-8") as out:
            out.write(lines)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def configure_tracing(service: str) -> TracerProvider | None:
    """Install the process's tracer provider from the environment; None when tracing is off."""
    global _configured
    if _configured:
        return None
    _configured = True
    names = [
        n.strip().lower()
        for n in os.environ.get("OTEL_TRACES_EXPORTER", "none").split(",")
        if n.strip()
    ]
    names = [n for n in names if n != "none"]
    path = os.environ.get("SOMA_TRACES_FILE")
    if not names and not path:
        return None
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service)})
    provider = TracerProvider(resource=resource)
    for name in names:
        if name == "otlp":
            # Imported only when asked for: it pulls protobuf in.
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        elif name == "console":
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
        else:
            log.warning("OTEL_TRACES_EXPORTER=%s is not supported here (otlp, console)", name)
    if path:
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(path)))
    trace.set_tracer_provider(provider)
    return provider


def remote_parent(parent: TraceParent | None) -> Context | None:
    """The OpenTelemetry context whose current span is the remote `parent` (None: a new trace)."""
    if parent is None:
        return None
    remote = SpanContext(
        int(parent.trace_id, 16),
        int(parent.span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(int(parent.flags, 16)),
    )
    return trace.set_span_in_context(NonRecordingSpan(remote))


def span_traceparent(span: Span | Any, parent: TraceParent | None) -> TraceParent:
    """The trace context naming `span`; a fresh child of `parent` when no SDK records spans
    (the no-op span would repeat the parent's span id)."""
    ctx = span.get_span_context()
    if span.is_recording() and ctx.is_valid:
        flags = f"{int(ctx.trace_flags):02x}"
        return TraceParent(f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", flags)
    return parent.child() if parent is not None else new_traceparent()


def parse(value: str | bytes | None) -> TraceParent | None:
    """`parse_traceparent` of a header that may still be bytes (a Kafka header)."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return parse_traceparent(value)
