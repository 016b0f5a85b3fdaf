"""Per-request edge context: the caller, request id, trace span and agent headers for an event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, Request

from gateway.auth import Principal, require_principal
from schemas import SchemaValidationError
from topics.records import RecordContext

# Agent headers copied into events, as upstream SomaAgent01 clients send them.
AGENT_HEADERS = {
    "universe_id": "X-Universe-Id",
    "persona_id": "X-Persona-Id",
    "agent_profile": "X-Agent-Profile",
}
_MAX_HEADER_VALUE = 256  # the schemas' limit for universe, persona_id and agent_profile


@dataclass(frozen=True)
class EdgeContext:
    """Everything a route needs to stamp an event with who sent it and in which trace."""

    principal: Principal
    request_id: str
    traceparent: str
    agent: dict[str, str]  # universe_id / persona_id / agent_profile from headers, when sent

    @property
    def tenant(self) -> str:
        return self.principal.tenant

    def record_context(self) -> RecordContext:
        return RecordContext(
            tenant=self.tenant, request_id=self.request_id, traceparent=self.traceparent
        )

    def trace_context(self) -> dict[str, str]:
        return {"traceparent": self.traceparent}

    def metadata(self, metadata: dict[str, Any] | None) -> dict[str, Any]:
        """`metadata` with the agent headers filled in where the body left them empty."""
        merged = dict(metadata or {})
        for name, value in self.agent.items():
            if merged.get(name) in (None, ""):
                merged[name] = value
        return merged


def utc_now_iso() -> str:
    """Now, as the RFC 3339 UTC timestamp every event's `occurred_at` carries."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _agent_headers(request: Request) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, header in AGENT_HEADERS.items():
        value = request.headers.get(header, "").strip()
        if not value:
            continue
        if len(value) > _MAX_HEADER_VALUE:
            raise SchemaValidationError(
                schema_id="headers",
                field=f"/headers/{header}",
                rule="maxLength",
                message=f"header {header} is longer than {_MAX_HEADER_VALUE} characters",
            )
        values[name] = value
    return values


async def edge_context(
    request: Request, principal: Principal = Depends(require_principal)
) -> EdgeContext:
    """FastAPI dependency: the authenticated edge context of this request."""
    return EdgeContext(
        principal=principal,
        request_id=request.state.request_id,
        traceparent=request.state.traceparent,
        agent=_agent_headers(request),
    )
