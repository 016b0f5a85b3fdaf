"""soma/tracing.py: off unless the OTEL_* variables (or SOMA_TRACES_FILE) ask for spans."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from processors.tracing import TraceParent
from soma import tracing


def test_tracing_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "_configured", False)
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.delenv("SOMA_TRACES_FILE", raising=False)
    assert tracing.configure_tracing("somastream-test") is None
    monkeypatch.setattr(tracing, "_configured", False)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert tracing.configure_tracing("somastream-test") is None


def test_json_lines_exporter_appends_one_line_per_span(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(tracing.JsonLinesSpanExporter(str(path))))
    parent = TraceParent("ab" * 16, "cd" * 8)
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("hop", context=tracing.remote_parent(parent)) as span:
        header = tracing.span_traceparent(span, parent)
    (line,) = path.read_text().splitlines()
    exported = json.loads(line)
    assert exported["name"] == "hop"
    assert exported["context"]["trace_id"] == "0x" + "ab" * 16
    assert exported["parent_id"] == "0x" + "cd" * 8
    assert header.trace_id == "ab" * 16 and header.span_id == exported["context"]["span_id"][2:]


def test_without_a_provider_a_hop_is_a_fresh_child_of_the_same_trace() -> None:
    from opentelemetry.trace import NonRecordingSpan, SpanContext

    parent = TraceParent("ab" * 16, "cd" * 8)
    span = NonRecordingSpan(SpanContext(int("ab" * 16, 16), int("cd" * 8, 16), is_remote=True))
    hop = tracing.span_traceparent(span, parent)
    assert hop.trace_id == parent.trace_id and hop.span_id != parent.span_id
