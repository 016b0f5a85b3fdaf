"""Request-body JSON Schemas derived from the event schemas: one source for validation and OpenAPI.

A request body is the event a route produces, minus what the gateway fills in itself. Deriving
it (instead of writing a second model by hand) keeps every published constraint the one the
producer validates with. Two renderings of each body exist:

- `body_schema(name)` is self-contained and validates the request (compile_validator);
- `openapi_components()` is the same schema for the OpenAPI document, where free-form values
  (`metadata`, `payload`, ...) point at a `JsonValue` component that states the strict-JSON
  rules every body is parsed under (schemas/strict_json.py enforces exactly those).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from typing import Any

from schemas import load_schema
from schemas.strict_json import INT64_MAX, INT64_MIN, MAX_DEPTH
from schemas.validation import EventValidator, compile_validator
from topics.registry import TopicRegistry

# Filled in by the gateway when a body leaves them out (gateway/routes/events.py `_stamp`).
STAMPED_FIELDS = ("event_id", "occurred_at", "request_id", "trace_context")
JSON_VALUE = "JsonValue"
_ANNOTATIONS = {"description", "title", "default", "examples", "$comment", "readOnly"}
_JSON_VALUE_REF = {"$ref": f"#/components/schemas/{JSON_VALUE}"}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """`node` with every local `#/$defs/...` reference replaced by its definition: an OpenAPI
    document resolves `#` against itself, not against the event schema."""
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].removeprefix("#/$defs/")
        merged = {**_inline(defs[name], defs)}
        merged.update({k: v for k, v in node.items() if k in _ANNOTATIONS})
        return merged
    return {k: _inline(v, defs) for k, v in node.items() if k not in ("$schema", "$id", "$defs")}


def _subschemas(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _subschemas(value)
    elif isinstance(node, list):
        for item in node:
            yield from _subschemas(item)


def _bound_numbers(schema: dict[str, Any]) -> None:
    """Give every number the signed 64-bit range the parser enforces on all of them."""
    for node in _subschemas(schema):
        kinds = node.get("type")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if "number" in kinds or "integer" in kinds:
            node["minimum"] = max(node.get("minimum", INT64_MIN), INT64_MIN)
            node["maximum"] = min(node.get("maximum", INT64_MAX), INT64_MAX)


def nullable(schema: dict[str, Any], description: str | None = None) -> dict[str, Any]:
    """`schema` that also accepts null (the routes read null as absent)."""
    out = copy.deepcopy(schema)
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    else:
        kinds = out.get("type", [])
        kinds = kinds if isinstance(kinds, list) else [kinds]
        out["type"] = [*kinds, "null"] if "null" not in kinds else kinds
    if description:
        out["description"] = description
    return out


def _event(schema_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(properties with references inlined, the raw schema) of an event schema."""
    raw = load_schema(schema_id)
    properties = _inline(raw["properties"], raw.get("$defs", {}))
    return properties, raw


def session_message() -> dict[str, Any]:
    """POST /v1/session/message: the upstream SomaAgent01 body, built from conversation_event."""
    props, _ = _event("conversation_event")
    return {
        "title": "SessionMessage",
        "type": "object",
        "additionalProperties": False,
        "required": ["message"],
        "properties": {
            "session_id": nullable(
                props["session_id"],
                "Existing session; absent or null starts a new one (a uuid). An empty string "
                "is refused.",
            ),
            "persona_id": {
                **props["persona_id"],
                "description": "Persona; X-Persona-Id if absent.",
            },
            "message": props["message"],
            "attachments": props["attachments"],
            "metadata": props["metadata"],
            "role": {**props["role"], "default": "user"},
        },
    }


def memory_write() -> dict[str, Any]:
    """One explicit memory write, built from memory_write (the event fields a client chooses)."""
    props, _ = _event("memory_write")
    return {
        "title": "MemoryWrite",
        "type": "object",
        "additionalProperties": False,
        "required": ["payload"],
        "properties": {
            "session_id": nullable(
                props["session_id"],
                "Session of the write; a sessionless write is keyed by its idempotency key.",
            ),
            "idempotency_key": nullable(
                props["idempotency_key"],
                "What the memory service dedupes on; derived from the write when absent.",
            ),
            "namespace": nullable(
                props["namespace"], "Memory namespace; SOMA_NAMESPACE if absent."
            ),
            "memory_type": nullable(props["memory_type"], "Kind of memory; episodic if absent."),
            "payload": props["payload"],
            "content": nullable(props["content"]),
            "universe": {**props["universe"], "description": "Memory universe; X-Universe-Id."},
            "persona_id": {
                **props["persona_id"],
                "description": "Persona; X-Persona-Id if absent.",
            },
            "agent_profile": {
                **props["agent_profile"],
                "description": "Agent profile; X-Agent-Profile if absent.",
            },
            "metadata": props["metadata"],
        },
    }


def memory_batch(max_items: int) -> dict[str, Any]:
    """POST /v1/memory/batch: at most `max_items` writes (more is 413 `too_many_items`)."""
    return {
        "title": "MemoryBatch",
        "type": "object",
        "additionalProperties": False,
        "required": ["items"],
        "properties": {"items": {"type": "array", "maxItems": max_items, "items": memory_write()}},
    }


def event_body(schema_id: str) -> dict[str, Any]:
    """One event as a client sends it: the event schema without what the gateway stamps.

    `tenant` is readOnly: it comes from the token; a body may repeat the token's tenant (any
    other is refused), and generators of example requests leave it out.
    """
    props, raw = _event(schema_id)
    if "tenant" in props:
        props["tenant"] = {
            **props["tenant"],
            "readOnly": True,
            "description": "Taken from the token: omit it (a different tenant is refused).",
        }
    required = [f for f in raw["required"] if f not in STAMPED_FIELDS and f != "tenant"]
    return {
        "title": raw["title"],
        "description": raw.get("description", ""),
        "type": "object",
        "additionalProperties": False,
        "required": required,
        "properties": props,
    }


def event_batch_body(schema_id: str, max_items: int) -> dict[str, Any]:
    """POST /v1/events/{topic}: one event, or `{"events": [...]}` of at most `max_items`."""
    single = event_body(schema_id)
    return {
        "title": f"{single['title']}Body",
        "description": 'One event, or a batch `{"events": [...]}` (all or nothing).',
        "anyOf": [
            single,
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["events"],
                "properties": {"events": {"type": "array", "maxItems": max_items, "items": single}},
            },
        ],
    }


@functools.cache
def body_validator(name: str, max_items: int) -> EventValidator:
    """The validator of a request body by component name (see `bodies`); compiled once."""
    return compile_validator(name, bodies(max_items)[name])


def bodies(max_items: int) -> dict[str, dict[str, Any]]:
    """Every request body by OpenAPI component name, in its self-contained (validating) form."""
    found = {
        "SessionMessage": session_message(),
        "MemoryWrite": memory_write(),
        "MemoryBatch": memory_batch(max_items),
    }
    registry = TopicRegistry()
    for topic in registry.public():
        found[event_component(topic)] = event_batch_body(registry.get(topic).schema, max_items)
    for schema in found.values():
        _bound_numbers(schema)
    return found


def event_component(topic: str) -> str:
    """The OpenAPI component name of the body of POST /v1/events/<topic>."""
    return "Events_" + topic.replace(".", "_")


def _is_free_form(node: dict[str, Any]) -> bool:
    """A map or value the plane does not interpret (`metadata`, `args`, `payload`, ...)."""
    if set(node) <= _ANNOTATIONS:
        return True  # no constraint at all: any JSON value
    return node.get("type") == "object" and not {"properties", "additionalProperties"} & set(node)


def _point_free_form_at_json_value(node: Any) -> Any:
    if isinstance(node, list):
        return [_point_free_form_at_json_value(item) for item in node]
    if not isinstance(node, dict):
        return node
    if _is_free_form(node) and node.get("type") == "object":
        return {**node, "additionalProperties": _JSON_VALUE_REF}
    if _is_free_form(node):
        return {**{k: v for k, v in node.items() if k in _ANNOTATIONS}, **_JSON_VALUE_REF}
    return {k: _point_free_form_at_json_value(v) for k, v in node.items()}


def json_value_schema() -> dict[str, Any]:
    """Any JSON value, as every body is parsed (schemas/strict_json.py)."""
    return {
        "description": (
            "Any JSON value, as the gateway reads every body: numbers within the signed 64-bit "
            f"range, no NaN or Infinity, no lone UTF-16 surrogate, at most {MAX_DEPTH} levels "
            "of nesting."
        ),
        "anyOf": [
            {"type": ["string", "boolean", "null"]},
            {"type": "number", "minimum": INT64_MIN, "maximum": INT64_MAX},
            {"type": "array", "items": _JSON_VALUE_REF},
            {"type": "object", "additionalProperties": _JSON_VALUE_REF},
        ],
    }


def openapi_components(max_items: int) -> dict[str, dict[str, Any]]:
    """The request bodies as OpenAPI components, plus JsonValue."""
    components = {
        name: _point_free_form_at_json_value(schema) for name, schema in bodies(max_items).items()
    }
    components[JSON_VALUE] = json_value_schema()
    return components
