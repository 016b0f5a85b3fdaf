"""Validating events: compiled fastjsonschema on the hot path, jsonschema to explain a refusal.

fastjsonschema (draft 7 semantics; our schemas use no keyword newer than that) accepts or refuses.
Only when it refuses is the event run through jsonschema's Draft202012Validator, which reports
the most relevant error precisely. Both see the same formats and the same `$` (see dialect.py).
Validation never mutates the event: `default` values are documentation, not filled in.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import fastjsonschema
from jsonschema import Draft202012Validator, FormatChecker, validators
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator

from schemas.dialect import FORMATS, anchored
from schemas.errors import SchemaValidationError
from schemas.explain import explain as explain_errors
from schemas.explain import message, pointer
from schemas.loader import load_schema, shared_schema

EventValidator = Callable[[Mapping[str, Any]], None]


def _pattern(
    validator: Validator, pattern: str, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not anchored(pattern).search(instance):
        yield ValidationError(f"does not match {pattern!r}")


_Precise = validators.extend(Draft202012Validator, validators={"pattern": _pattern})


def _format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())
    for name, check in FORMATS.items():
        checker.checks(name)(check)
    return checker


_FORMAT_CHECKER = _format_checker()


def _no_remote_refs(uri: str) -> Any:
    raise fastjsonschema.JsonSchemaDefinitionException(
        f"remote $ref {uri!r} refused: schemas must be self-contained (use local $defs)"
    )


def _compile_fast(schema: Mapping[str, Any]) -> Callable[[Any], Any]:
    return fastjsonschema.compile(
        copy.deepcopy(dict(schema)),  # a private copy: compiling rewrites every $ref in place
        handlers={"http": _no_remote_refs, "https": _no_remote_refs},
        formats=FORMATS,
        use_default=False,
    )


@functools.cache
def fast_validator(schema_id: str) -> Callable[[Any], Any]:
    """The compiled fastjsonschema function of `schema_id` (raises JsonSchemaValueException)."""
    return _compile_fast(load_schema(schema_id))


@functools.cache
def precise_validator(schema_id: str) -> Validator:
    """jsonschema's Draft202012Validator of `schema_id`, with our formats and `$` reading."""
    return _Precise(shared_schema(schema_id), format_checker=_FORMAT_CHECKER)


def explain(schema_id: str, event: Any) -> SchemaValidationError | None:
    """Why `schema_id` refuses `event` (the most relevant error), or None if it accepts it."""
    return explain_errors(schema_id, precise_validator(schema_id).iter_errors(event))


def _from_fast(
    schema_id: str, exc: fastjsonschema.JsonSchemaValueException
) -> SchemaValidationError:
    # Reached only if the two validators disagree, which the sample tests rule out; still a 422.
    field = pointer(exc.path[1:])
    rule = exc.rule or "unknown"
    return SchemaValidationError(
        schema_id, field, rule, message(field, rule, exc.rule_definition, exc.value)
    )


_Explainer = Callable[[Any], SchemaValidationError | None]


def _checker(name: str, fast: Callable[[Any], Any], explain_event: _Explainer) -> EventValidator:
    def check(event: Mapping[str, Any]) -> None:
        data = dict(event) if isinstance(event, Mapping) and not isinstance(event, dict) else event
        try:
            fast(data)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise (explain_event(data) or _from_fast(name, exc)) from None

    check.__name__ = check.__qualname__ = f"validate_{name}"
    return check


@functools.cache
def validator(schema_id: str) -> EventValidator:
    """The validator of `schema_id`, compiled once; it raises SchemaValidationError."""
    return _checker(schema_id, fast_validator(schema_id), lambda event: explain(schema_id, event))


def compile_validator(name: str, schema: Mapping[str, Any]) -> EventValidator:
    """A validator of a schema built at run time (e.g. a request body derived from an event
    schema), with the same two validators, formats and `$` reading; errors carry `name`."""
    precise = _Precise(copy.deepcopy(dict(schema)), format_checker=_FORMAT_CHECKER)
    fast = _compile_fast(schema)
    return _checker(name, fast, lambda event: explain_errors(name, precise.iter_errors(event)))


def validate(schema_id: str, event: Mapping[str, Any]) -> None:
    """Refuse `event` with a SchemaValidationError unless schema `schema_id` accepts it."""
    validator(schema_id)(event)
