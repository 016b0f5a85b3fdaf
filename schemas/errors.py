"""Errors of the schemas package: an unknown schema id, and an event its schema refuses."""

from __future__ import annotations

from soma.errors import SomaError


class UnknownSchema(SomaError, LookupError):
    """No schema of that id ships in `schemas/` (a topic names a schema that does not exist)."""

    def __init__(self, schema_id: str) -> None:
        super().__init__(
            f"unknown schema {schema_id!r}: no schemas/{schema_id}.json in the package"
        )
        self.schema_id = schema_id


class SchemaValidationError(SomaError):
    """An event its schema refuses: which field broke which rule (the gateway answers 422)."""

    def __init__(self, schema_id: str, field: str, rule: str, message: str) -> None:
        super().__init__(f"invalid {schema_id} event: {message}")
        self.schema_id = schema_id
        self.field = field  # JSON pointer of the offending field, "/" for the root
        self.rule = rule  # the JSON Schema keyword that failed
        self.message = message

    def as_dict(self) -> dict[str, str]:
        """The error as an HTTP 422 body or a DLQ detail."""
        return {
            "schema": self.schema_id,
            "field": self.field,
            "rule": self.rule,
            "message": self.message,
        }


class MalformedJson(SomaError, ValueError):
    """Bytes that are not JSON text (the gateway answers 400): what is wrong and where."""

    def __init__(self, reason: str, position: int) -> None:
        super().__init__(f"body is not valid JSON: {reason} at byte {position}")
        self.reason = reason
        self.position = position
