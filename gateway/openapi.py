"""The OpenAPI document: error bodies and statuses per route, request bodies, the bearer scheme.

Routes declare which statuses they can answer with `responses(...)`; the request-body schemas
come from gateway/request_schemas.py (derived from the event schemas the producer validates
with), so the published contract is the enforced one.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field

from gateway.request_schemas import openapi_components
from soma.settings import Settings


class ErrorBody(BaseModel):
    """Every error the gateway answers: a stable code, a message, the request id, and for
    refusals of a body the field (a JSON pointer) and the rule it broke."""

    model_config = ConfigDict(extra="allow")

    error: str = Field(description="Stable error code, e.g. validation_failed, unauthorized.")
    message: str = Field(description="What went wrong, for a human.")
    request_id: str | None = Field(None, description="X-Request-Id of the request.")
    field: str | None = Field(None, description="JSON pointer of the offending field.")
    rule: str | None = Field(None, description="The rule (JSON Schema keyword) it broke.")


_WHY = {
    400: "The body is not JSON (`malformed_json`).",
    401: "Missing, malformed, expired or unknown-key bearer token (`unauthorized`).",
    403: "The token lacks the role, or the topic is internal (`forbidden`, `topic_not_public`).",
    404: "No such topic, or no such dead letter visible to the caller (`unknown_topic`, "
    "`not_found`).",
    409: "The dead letter was replayed already; replay it again with `force` (`conflict`).",
    413: "Body over SOMA_MAX_BODY_BYTES, batch over SOMA_MAX_BATCH_ITEMS, or a record over "
    "1 MB (`payload_too_large`, `too_many_items`).",
    415: "The body is not `application/json` (`unsupported_media_type`).",
    422: "The body or a parameter breaks its schema; `field` and `rule` say where and which "
    "(`validation_failed`).",
    429: "The tenant's outbox holds more memory writes than SOMA_OUTBOX_TENANT_LIMIT (the memory "
    "service is behind); retry after `Retry-After` seconds. Nothing was accepted "
    "(`tenant_throttled`).",
    503: "The broker did not acknowledge in time, or state is unavailable; retry after "
    "`Retry-After` seconds. Nothing was accepted.",
}
_HEADERS = {
    401: {"WWW-Authenticate": {"description": "Bearer challenge", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
    503: {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for the error statuses a route can answer, with their body."""
    return {
        status: {"model": ErrorBody, "description": _WHY[status], "headers": _HEADERS.get(status)}
        if status in _HEADERS
        else {"model": ErrorBody, "description": _WHY[status]}
        for status in statuses
    }


def json_request_body(component: str) -> dict[str, Any]:
    """`openapi_extra` of a route whose body a dependency reads (gateway/body.py)."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{component}"}}
            },
        }
    }


def _drop_default_validation_errors(document: dict[str, Any]) -> None:
    """Remove the 422 FastAPI adds to every route with parameters: our 422 has the ErrorBody
    shape, and routes that can answer it say so with `responses(422)`."""
    default = "#/components/schemas/HTTPValidationError"
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            refused = operation.get("responses", {}).get("422", {})
            schema = refused.get("content", {}).get("application/json", {}).get("schema", {})
            if schema.get("$ref") == default:
                del operation["responses"]["422"]
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Build the document once, on first request, with the request-body components added."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(openapi_components(settings.max_batch_items))
            _drop_default_validation_errors(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
