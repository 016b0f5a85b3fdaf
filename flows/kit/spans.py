"""One OpenTelemetry span per event a flow processes, a child of the event's `traceparent`.

Recorded only when the process has a tracer provider (soma/tracing.py: OTEL_* variables);
otherwise the spans are no-ops and every trace context passes through unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from processors.intake import Event
from processors.tracing import parse_traceparent
from soma.tracing import remote_parent, span_traceparent


class EventSpans:
    """CONSUMER spans `<flow> process`, one per (event, the trace context it carries)."""

    def __init__(self, flow: str, items: Sequence[tuple[Event, str | None]]) -> None:
        tracer = trace.get_tracer(__name__)
        self._spans = []
        self.traceparents: list[str | None] = []
        for event, traceparent in items:
            parent = parse_traceparent(traceparent)
            span = tracer.start_span(
                f"{flow} process", context=remote_parent(parent), kind=SpanKind.CONSUMER
            )
            record = event.record
            request_id = record.header("request_id")
            span.set_attribute("messaging.system", "kafka")
            span.set_attribute("messaging.destination.name", record.topic)
            span.set_attribute("messaging.destination.partition.id", str(record.partition))
            span.set_attribute("messaging.kafka.offset", record.offset)
            span.set_attribute("soma.tenant", event.tenant)
            if request_id:
                span.set_attribute("soma.request_id", request_id.decode("latin-1"))
            self._spans.append(span)
            # Backend calls made for this event become children of this span (recorded) or of
            # the event's own context (not recorded): never a context that names no span.
            self.traceparents.append(
                span_traceparent(span, parent).header() if span.is_recording() else traceparent
            )

    def end(self, outcome: str, error: BaseException | None = None) -> None:
        for span in self._spans:
            span.set_attribute("soma.outcome", outcome)
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            span.end()
