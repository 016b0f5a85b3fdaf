"""W3C traceparent parsing and creation (https://www.w3.org/TR/trace-context/)."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@dataclass(frozen=True)
class TraceParent:
    """One W3C trace context: the trace and the span that caused this record."""

    trace_id: str
    span_id: str
    flags: str = "01"

    def header(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def child(self) -> TraceParent:
        """A new span in the same trace (what a hop through the gateway is)."""
        return TraceParent(self.trace_id, secrets.token_hex(8), self.flags)


def parse_traceparent(value: str | None) -> TraceParent | None:
    """The trace context in `value`, or None when it is absent or malformed (then start anew).

    Uppercase hex is malformed: W3C trace-context requires lowercase and tells a receiver to
    ignore such a header rather than repair it.
    """
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip())
    if not match:
        return None
    version, trace_id, span_id, flags = match.groups()
    if version == "ff" or set(trace_id) == {"0"} or set(span_id) == {"0"}:
        return None
    return TraceParent(trace_id, span_id, flags)


def new_traceparent() -> TraceParent:
    """A fresh sampled trace."""
    return TraceParent(secrets.token_hex(16), secrets.token_hex(8), "01")
