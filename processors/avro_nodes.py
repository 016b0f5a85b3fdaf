"""Avro mapping pieces: per JSON Schema construct an Avro type, a type-checked encode, a decode."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

Encode = Callable[[Any], Any]
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
JSON_TEXT: dict[str, Any] = {"type": "string", "soma.json": True}


class MappingError(ValueError):
    """A value the derived Avro schema cannot carry (it breaks the JSON Schema)."""


@dataclass(frozen=True)
class Node:
    branches: tuple[Any, ...]  # Avro union members (one member: no union)
    encode: Encode
    decode: Encode
    nullable: bool = False  # the Avro type has a null branch
    json: bool = False  # JSON text: any JSON value, null included

    @property
    def avro(self) -> Any:
        return self.branches[0] if len(self.branches) == 1 else list(self.branches)


def json_text() -> Node:
    def encode(value: Any) -> str:
        try:
            return orjson.dumps(value).decode()
        except TypeError as exc:
            raise MappingError(str(exc)) from None

    return Node((JSON_TEXT,), encode, orjson.loads, json=True)


def check(kinds: tuple[type, ...], what: str) -> Encode:
    # Exact type tests (bool is an int subclass; JSON parsers make no other subclasses),
    # the cheapest check there is: it runs for every field of every archived record.
    def encode(value: Any) -> Any:
        if type(value) not in kinds:
            raise MappingError(f"expected {what}, got {type(value).__name__}")
        if type(value) is int and not _LONG_MIN <= value <= _LONG_MAX:
            raise MappingError(f"integer {value} is outside Avro's long")
        return value

    return encode


def same(value: Any) -> Any:
    return value


PRIMITIVE = {
    "string": Node(("string",), check((str,), "string"), same),
    "integer": Node(("long",), check((int,), "long"), same),
    "boolean": Node(("boolean",), check((bool,), "boolean"), same),
    "number": Node(("long", "double"), check((int, float), "number"), same),
}


def none(value: Any) -> None:
    if value is not None:
        raise MappingError(f"expected null, got {type(value).__name__}")


def with_null(node: Node) -> Node:
    def encode(value: Any) -> Any:
        return None if value is None else node.encode(value)

    def decode(value: Any) -> Any:
        return None if value is None else node.decode(value)

    return Node(("null", *node.branches), encode, decode, nullable=True)


def absent_or_json() -> Node:
    text = json_text()
    return Node(("null", *text.branches), text.encode, text.decode, nullable=True)


def any_of(kinds: dict[str, Node]) -> Encode:
    def encode(value: Any) -> Any:
        for node in kinds.values():
            try:
                return node.encode(value)
            except MappingError:
                continue
        raise MappingError(f"{type(value).__name__} is none of {sorted(kinds)}")

    return encode


def record_encoder(plan: list[tuple[str, Node, bool]]) -> Encode:
    props = frozenset(prop for prop, _, _ in plan)
    required = [(prop, node.encode) for prop, node, optional in plan if not optional]
    optional = [(prop, node.encode) for prop, node, optional in plan if optional]

    def encode(value: Any) -> dict[str, Any]:
        if type(value) is not dict:
            raise MappingError(f"expected object, got {type(value).__name__}")
        if not value.keys() <= props:
            unknown = sorted(value.keys() - props)[:5]
            raise MappingError(f"properties not in the schema: {unknown}")
        out = {}
        try:
            for prop, encode_field in required:
                out[prop] = encode_field(value[prop])
        except KeyError as missing:
            raise MappingError(f"required property {missing} is missing") from None
        # Absent optional properties become null; a present null of a nullable optional
        # property becomes the JSON text "null" (its node is JSON text).
        for prop, encode_field in optional:
            out[prop] = encode_field(value[prop]) if prop in value else None
        return out

    return encode


def record_decoder(plan: list[tuple[str, Node, bool]]) -> Encode:
    def decode(datum: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for prop, node, optional in plan:
            raw = datum.get(prop)
            if optional and raw is None:
                continue  # absent
            out[prop] = node.decode(raw)
        return out

    return decode
