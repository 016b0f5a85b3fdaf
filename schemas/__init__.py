"""JSON Schemas (draft 2020-12) of every event and envelope, and the validators producers use."""

from schemas.errors import MalformedJson, SchemaValidationError, UnknownSchema
from schemas.loader import load_schema, schema_ids
from schemas.validation import validate, validator

__all__ = [
    "MalformedJson",
    "SchemaValidationError",
    "UnknownSchema",
    "load_schema",
    "schema_ids",
    "validate",
    "validator",
]
