"""Turning a refusal into the field, the rule and a message a client can act on."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from jsonschema.exceptions import ValidationError, best_match

from schemas.dialect import anchored
from schemas.errors import SchemaValidationError

_JSON_TYPES = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
    (type(None), "null"),
)


# A refusal names the field but must stay small and encodable whatever the client sent as keys.
MAX_SEGMENT_CHARS = 64


def _segment(part: Any) -> str:
    text = str(part)
    if not text.isascii():
        # A lone surrogate cannot be encoded in a UTF-8 response: show it as its escape.
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > MAX_SEGMENT_CHARS:
        text = text[:MAX_SEGMENT_CHARS] + "…"
    return text.replace("~", "~0").replace("/", "~1")


def pointer(path: Iterable[Any]) -> str:
    """RFC 6901 JSON pointer of `path`; "/" stands for the root. Segments longer than
    MAX_SEGMENT_CHARS are cut (ending in "…") and lone surrogates escaped, so a hostile key
    is never echoed back unbounded or unencodable."""
    return "/" + "/".join(_segment(part) for part in path)


def json_type(value: object) -> str:
    """The JSON type name of a decoded value (no value is echoed back, only its type)."""
    for python_type, name in _JSON_TYPES:
        if isinstance(value, python_type):
            return name
    return type(value).__name__


def _extra_property(error: ValidationError) -> str:
    schema = error.schema if isinstance(error.schema, dict) else {}
    known = schema.get("properties", {})
    patterns = [anchored(p) for p in schema.get("patternProperties", {})]
    instance = error.instance if isinstance(error.instance, dict) else {}
    extras = [k for k in instance if k not in known and not any(p.search(k) for p in patterns)]
    return extras[0] if extras else ""


def _missing_property(error: ValidationError) -> str:
    instance = error.instance if isinstance(error.instance, dict) else {}
    missing = [name for name in error.validator_value if name not in instance]
    return missing[0] if missing else ""


def _describe(rule: str, expected: Any, instance: Any) -> str:
    """What the rule demands, phrased for the client; the offending value itself is never echoed."""
    match rule:
        case "required":
            return "is required"
        case "additionalProperties":
            return "is not allowed here"
        case "type":
            kinds = expected if isinstance(expected, list) else [expected]
            return f"must be of type {' or '.join(kinds)} (got {json_type(instance)})"
        case "enum":
            return f"must be one of {expected!r}"
        case "const":
            return f"must be {expected!r}"
        case "maxLength":
            return f"must be at most {expected} characters long (got {len(instance)})"
        case "minLength":
            return f"must be at least {expected} characters long (got {len(instance)})"
        case "pattern":
            return f"must match the pattern {expected!r}"
        case "format":
            return f"must be a valid {expected}"
        case "minimum":
            return f"must be >= {expected}"
        case "maximum":
            return f"must be <= {expected}"
        case "exclusiveMinimum":
            return f"must be > {expected}"
        case "exclusiveMaximum":
            return f"must be < {expected}"
        case "maxItems":
            return f"must have at most {expected} items (got {len(instance)})"
        case "minItems":
            return f"must have at least {expected} items (got {len(instance)})"
        case "maxProperties":
            return f"must have at most {expected} properties (got {len(instance)})"
        case "minProperties":
            return f"must have at least {expected} properties (got {len(instance)})"
        case "anyOf" | "oneOf":
            return "matches none of the allowed forms"
        case _:
            return f"breaks the rule {rule!r}"


def message(field: str, rule: str, expected: Any, instance: Any) -> str:
    """The human-readable line: names the field and the rule."""
    return f"field '{field}': {_describe(rule, expected, instance)} (rule: {rule})"


# jsonschema yields errors lazily: taking a few bounds the cost of explaining an event that
# breaks a rule a million times (an array of a million wrong items).
MAX_ERRORS = 5


def explain(schema_id: str, errors: Iterable[ValidationError]) -> SchemaValidationError | None:
    """The most relevant of the first MAX_ERRORS `errors` (jsonschema's best_match)."""
    error = best_match(itertools.islice(errors, MAX_ERRORS))
    if error is None:
        return None
    rule = str(error.validator)
    path = list(error.absolute_path)
    if rule == "required":
        path.append(_missing_property(error))
    elif rule == "additionalProperties" and error.validator_value is False:
        path.append(_extra_property(error))
    field = pointer(path)
    text = message(field, rule, error.validator_value, error.instance)
    return SchemaValidationError(schema_id, field, rule, text)
