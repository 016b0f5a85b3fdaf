"""Gateway errors, and handlers that turn every failure into a JSON body saying what went wrong."""

from __future__ import annotations

import http
import re
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from schemas import MalformedJson, SchemaValidationError
from soma.errors import SomaError
from soma.metrics import GATEWAY_REJECTED_REQUESTS, GATEWAY_THROTTLED_REQUESTS
from state.errors import StateUnavailable, UnknownStatePage
from topics.errors import BrokerUnavailable, RecordRejected
from topics.registry import UnknownTopic


class GatewayError(HTTPException, SomaError):
    """A refusal with a status, a stable `error` code and extra body fields.

    It is an HTTPException so that FastAPI re-raises it untouched even while reading the body
    (the body-size limit fires there), instead of wrapping it into a generic 400.
    """

    status = 400
    code = "bad_request"

    def __init__(
        self, message: str, *, headers: Mapping[str, str] | None = None, **fields: Any
    ) -> None:
        super().__init__(self.status, message, dict(headers) if headers else None)
        self.message = message
        self.fields = fields

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.fields}


class Unauthorized(GatewayError):
    status, code = 401, "unauthorized"

    def __init__(self, message: str) -> None:
        # RFC 6750: tell the client which scheme to use and that the token was the problem.
        description = message.replace('"', "'").encode("ascii", "replace").decode()
        challenge = (
            f'Bearer realm="somastream", error="invalid_token", error_description="{description}"'
        )
        super().__init__(message, headers={"WWW-Authenticate": challenge})


class Forbidden(GatewayError):
    status, code = 403, "forbidden"


class TopicNotPublic(GatewayError):
    status, code = 403, "topic_not_public"


class PayloadTooLarge(GatewayError):
    status, code = 413, "payload_too_large"


class TooManyItems(GatewayError):
    status, code = 413, "too_many_items"


class NotFound(GatewayError):
    status, code = 404, "not_found"


class Conflict(GatewayError):
    status, code = 409, "conflict"


class UnsupportedMediaType(GatewayError):
    status, code = 415, "unsupported_media_type"


def prefixed(exc: SchemaValidationError, prefix: str) -> SchemaValidationError:
    """The same error with its field pointer placed under `prefix` (e.g. `/items/3`)."""
    field = prefix if exc.field in ("", "/") else f"{prefix}{exc.field}"
    return SchemaValidationError(
        schema_id=exc.schema_id, field=field, rule=exc.rule, message=f"{prefix}: {exc.message}"
    )


# pydantic error types → the JSON Schema keyword a client knows from the event schemas.
_RULES = {
    "missing": "required",
    "extra_forbidden": "additionalProperties",
    "literal_error": "enum",
    "enum": "enum",
    "string_too_long": "maxLength",
    "string_too_short": "minLength",
    "too_long": "maxItems",
    "too_short": "minItems",
    "string_pattern_mismatch": "pattern",
    "greater_than": "exclusiveMinimum",
    "greater_than_equal": "minimum",
    "less_than": "exclusiveMaximum",
    "less_than_equal": "maximum",
}


def field_pointer(loc: tuple[Any, ...]) -> str:
    """The JSON pointer of a pydantic error location (`("body", "items", 3)` → `/items/3`)."""
    # Body errors point into the JSON body; path/query/header errors keep their location name.
    parts = list(loc[1:]) if loc and loc[0] == "body" else list(loc)
    escaped = (str(p).replace("~", "~0").replace("/", "~1") for p in parts)
    return "/" + "/".join(escaped)


def schema_rule(error_type: str) -> str:
    """The JSON Schema keyword closest to a pydantic error type."""
    if error_type.endswith("_type") or error_type.endswith("_parsing"):
        return "type"
    return _RULES.get(error_type, error_type)


def _json(
    request: Request, status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        body = {**body, "request_id": request_id}
    if status < 500 or status == 503:
        GATEWAY_REJECTED_REQUESTS.labels(reason=str(body.get("error"))).inc()
    return JSONResponse(body, status_code=status, headers=dict(headers) if headers else None)


async def _gateway_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GatewayError)
    return _json(request, exc.status_code, exc.body(), exc.headers)


async def _schema_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SchemaValidationError)
    return _json(request, 422, {"error": "validation_failed", **exc.as_dict()})


async def _request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0]
    if first["type"] == "json_invalid":
        detail = first.get("ctx", {}).get("error", "invalid JSON")
        position = first["loc"][-1]
        return _json(
            request,
            400,
            {
                "error": "malformed_json",
                "message": f"body is not valid JSON: {detail} at byte {position}",
            },
        )
    field = field_pointer(tuple(first["loc"]))
    rule = schema_rule(first["type"])
    return _json(
        request,
        422,
        {
            "error": "validation_failed",
            "field": field,
            "rule": rule,
            "message": f"field '{field}': {first['msg']} (rule: {rule})",
            "errors": len(exc.errors()),
        },
    )


async def _malformed_json(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MalformedJson)
    return _json(request, 400, {"error": "malformed_json", "message": str(exc)})


async def _broker_unavailable(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BrokerUnavailable)
    retry = exc.retry_after_s
    GATEWAY_THROTTLED_REQUESTS.labels(reason="broker_unavailable").inc()
    return _json(
        request,
        503,
        {"error": "broker_unavailable", "message": str(exc), "retry_after_s": retry},
        {"Retry-After": str(retry)},
    )


async def _state_unavailable(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StateUnavailable)
    retry = max(1, int(exc.retry_after_s))
    GATEWAY_THROTTLED_REQUESTS.labels(reason="state_unavailable").inc()
    return _json(
        request,
        503,
        {"error": "state_unavailable", "message": str(exc), "retry_after_s": retry},
        {"Retry-After": str(retry)},
    )


# What a topic name can look like (Kafka's rule); anything else is not echoed back.
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


async def _unknown_topic(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, UnknownTopic)
    # The name is echoed only when it could be a topic name: a path segment of megabytes,
    # or of control characters, is not repeated back to the client.
    shown = exc.name if _TOPIC_NAME.fullmatch(exc.name) else None
    message = f"no topic {shown!r} in the registry" if shown else "no such topic in the registry"
    body = {"error": "unknown_topic", "message": message, "topic": shown}
    registry = getattr(request.app.state, "registry", None)
    if registry is not None:
        body["public_topics"] = registry.public()
    return _json(request, 404, body)


async def _unknown_state_page(request: Request, exc: Exception) -> JSONResponse:
    return _json(request, 404, {"error": "unknown_state_page", "message": str(exc)})


async def _record_rejected(request: Request, exc: Exception) -> JSONResponse:
    return _json(request, 422, {"error": "record_rejected", "message": str(exc)})


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = http.HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
    headers = exc.headers
    if exc.status_code == 405:
        # Starlette names only the methods of the first route matching the path; a path served
        # by several routes (GET and DELETE of /v1/admin/dlq/{topic}) must list them all.
        headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
    return _json(request, exc.status_code, {"error": code, "message": str(exc.detail)}, headers)


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        route_methods = getattr(route, "methods", None)
        if match != Match.NONE and route_methods:
            methods.update(route_methods)
    return sorted(methods)


INTERNAL_ERROR_BODY = {
    "error": "internal_error",
    "message": "unexpected server error; quote the request_id",
}


def install_error_handlers(app: FastAPI) -> None:
    """Register every handler; more specific classes win over HTTPException by MRO."""
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(SchemaValidationError, _schema_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(MalformedJson, _malformed_json)
    app.add_exception_handler(BrokerUnavailable, _broker_unavailable)
    app.add_exception_handler(RecordRejected, _record_rejected)
    app.add_exception_handler(StateUnavailable, _state_unavailable)
    app.add_exception_handler(UnknownStatePage, _unknown_state_page)
    app.add_exception_handler(UnknownTopic, _unknown_topic)
    app.add_exception_handler(HTTPException, _http_error)
    # Anything else is answered by gateway.middleware.UnexpectedErrorMiddleware: Starlette's
    # handler for Exception re-raises after answering, which resets keep-alive connections.
