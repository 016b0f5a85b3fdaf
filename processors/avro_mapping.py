"""An Avro schema derived from a topic's JSON Schema, and the lossless mapping between the two.

Rules (what the project's schemas use):

- string, boolean → the same; integer → long; number → union of long and double (an integer
  stays an integer); enum of strings → string (JSON enum values such as "n/a" are no Avro
  symbols); `$ref` is followed into `$defs`.
- an object with `properties` and `additionalProperties: false` → a record, its properties
  fields in order; an object whose `additionalProperties` is a schema → a map; an array with
  `items` → an array.
- a property that is not required → a union with null, default null (absent ⇔ null); one that is
  not required but may be null → JSON text, so absent and null stay apart.
- anything else (free-form objects such as `payload`, mixed unions) → JSON text: a string
  field marked `"soma.json": true`.

`to_avro` checks types as it goes (MappingError), so a datum it returns always encodes;
`from_avro(to_avro(v)) == v` for every value the JSON Schema accepts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

Encode = Callable[[Any], Any]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SCALARS = {"string", "integer", "number", "boolean", "null"}
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
JSON_TEXT: dict[str, Any] = {"type": "string", "soma.json": True}


class MappingError(ValueError):
    """A value the derived Avro schema cannot carry (it breaks the JSON Schema)."""


@dataclass(frozen=True)
class _Node:
    branches: tuple[Any, ...]  # Avro union members (one member: no union)
    encode: Encode
    decode: Encode
    nullable: bool = False  # the Avro type has a null branch
    json: bool = False  # JSON text: any JSON value, null included

    @property
    def avro(self) -> Any:
        return self.branches[0] if len(self.branches) == 1 else list(self.branches)


@dataclass(frozen=True)
class AvroMapping:
    """The Avro record schema of a topic's values and the two directions of the mapping."""

    schema: dict[str, Any]
    to_avro: Encode
    from_avro: Encode


def avro_mapping(json_schema: Mapping[str, Any], name: str) -> AvroMapping:
    """The mapping for values of `json_schema` (an object schema), as Avro record `name`."""
    node = _Compiler(json_schema, name).node(json_schema, name)
    if not (isinstance(node.avro, dict) and node.avro.get("type") == "record"):
        raise ValueError(f"{name}: the top level must map to a record")
    return AvroMapping(node.avro, node.encode, node.decode)


def _json_text() -> _Node:
    def encode(value: Any) -> str:
        try:
            return orjson.dumps(value).decode()
        except TypeError as exc:
            raise MappingError(str(exc)) from None

    return _Node((JSON_TEXT,), encode, orjson.loads, json=True)


def _check(kinds: tuple[type, ...], what: str) -> Encode:
    # Exact type tests (bool is an int subclass; JSON parsers make no other subclasses),
    # the cheapest check there is: it runs for every field of every archived record.
    def encode(value: Any) -> Any:
        if type(value) not in kinds:
            raise MappingError(f"expected {what}, got {type(value).__name__}")
        if type(value) is int and not _LONG_MIN <= value <= _LONG_MAX:
            raise MappingError(f"integer {value} is outside Avro's long")
        return value

    return encode


def _same(value: Any) -> Any:
    return value


_PRIMITIVE = {
    "string": _Node(("string",), _check((str,), "string"), _same),
    "integer": _Node(("long",), _check((int,), "long"), _same),
    "boolean": _Node(("boolean",), _check((bool,), "boolean"), _same),
    "number": _Node(("long", "double"), _check((int, float), "number"), _same),
}


class _Compiler:
    def __init__(self, root: Mapping[str, Any], name: str) -> None:
        self.root, self.prefix = root, name
        self._names: set[str] = set()

    def node(self, schema: Mapping[str, Any], path: str) -> _Node:
        if "$ref" in schema:
            ref = schema["$ref"]
            if not ref.startswith("#/$defs/"):
                return _json_text()
            return self.node(self.root["$defs"][ref.removeprefix("#/$defs/")], path)
        if "anyOf" in schema or "oneOf" in schema:
            options = [self._resolve(o) for o in schema.get("anyOf", schema.get("oneOf", []))]
            return self._scalars([t for o in options for t in _types(o)], schema)
        types = _types(schema)
        if "enum" in schema:
            if not all(isinstance(v, str) or v is None for v in schema["enum"]):
                return _json_text()
            types = ["string"] + (["null"] if None in schema["enum"] else [])
        concrete = [t for t in types if t != "null"]
        if concrete == ["object"]:
            node = self._object(schema, path)
        elif concrete == ["array"] and isinstance(schema.get("items"), Mapping):
            node = self._array(schema["items"], path)
        else:
            return self._scalars(types, schema)
        return _with_null(node) if "null" in types and not node.nullable else node

    def _resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        while "$ref" in schema and schema["$ref"].startswith("#/$defs/"):
            schema = self.root["$defs"][schema["$ref"].removeprefix("#/$defs/")]
        return schema

    def _scalars(self, types: list[str], schema: Mapping[str, Any]) -> _Node:
        if not types or not set(types) <= _SCALARS or len(set(types)) != len(types):
            return _json_text()
        concrete = [_PRIMITIVE[t] for t in types if t != "null"]
        if not concrete:
            return _Node(("null",), _none, _same, nullable=True)
        if len(concrete) == 1:
            node = concrete[0]
        else:  # e.g. string or integer: the Python type picks the branch
            kinds = {t: _PRIMITIVE[t] for t in types if t != "null"}
            node = _Node(
                tuple(b for n in kinds.values() for b in n.branches), _any_of(kinds), _same
            )
        return _with_null(node) if "null" in types else node

    def _array(self, items: Mapping[str, Any], path: str) -> _Node:
        item = self.node(items, f"{path}_item")

        def encode(value: Any) -> list[Any]:
            if not isinstance(value, list):
                raise MappingError(f"expected array, got {type(value).__name__}")
            return [item.encode(v) for v in value]

        def decode(value: list[Any]) -> list[Any]:
            return [item.decode(v) for v in value]

        return _Node(({"type": "array", "items": item.avro},), encode, decode)

    def _object(self, schema: Mapping[str, Any], path: str) -> _Node:
        extra = schema.get("additionalProperties", True)
        properties = schema.get("properties")
        if not properties and isinstance(extra, Mapping):
            return self._map(self.node(extra, f"{path}_value"))
        if not properties or extra is not False or not all(map(_NAME.match, properties)):
            return _json_text()
        return self._record(properties, set(schema.get("required", ())), path)

    def _map(self, value: _Node) -> _Node:
        def encode(data: Any) -> dict[str, Any]:
            if not isinstance(data, dict):
                raise MappingError(f"expected object, got {type(data).__name__}")
            return {str(k): value.encode(v) for k, v in data.items()}

        def decode(data: dict[str, Any]) -> dict[str, Any]:
            return {k: value.decode(v) for k, v in data.items()}

        return _Node(({"type": "map", "values": value.avro},), encode, decode)

    def _record(self, properties: Mapping[str, Any], required: set[str], path: str) -> _Node:
        name = self._record_name(path)
        fields, plan = [], []
        for prop, sub in properties.items():
            node = self.node(sub, f"{path}_{prop}")
            optional = prop not in required
            if optional and (node.nullable or node.json):
                node = _absent_or_json()  # absent is null, a present null the text "null"
            elif optional:
                node = _with_null(node)
            field: dict[str, Any] = {"name": prop, "type": node.avro}
            if optional:
                field["default"] = None
            fields.append(field)
            plan.append((prop, node, optional))
        return _Node(
            ({"type": "record", "name": name, "fields": fields},),
            _record_encoder(plan),
            _record_decoder(plan),
        )

    def _record_name(self, path: str) -> str:
        name = re.sub(r"[^A-Za-z0-9_]", "_", path)
        while name in self._names:
            name += "_"
        self._names.add(name)
        return name


def _types(schema: Mapping[str, Any]) -> list[str]:
    declared = schema.get("type")
    if isinstance(declared, str):
        return [declared]
    return list(declared) if isinstance(declared, list) else []


def _none(value: Any) -> None:
    if value is not None:
        raise MappingError(f"expected null, got {type(value).__name__}")


def _with_null(node: _Node) -> _Node:
    def encode(value: Any) -> Any:
        return None if value is None else node.encode(value)

    def decode(value: Any) -> Any:
        return None if value is None else node.decode(value)

    return _Node(("null", *node.branches), encode, decode, nullable=True)


def _absent_or_json() -> _Node:
    text = _json_text()
    return _Node(("null", *text.branches), text.encode, text.decode, nullable=True)


def _any_of(kinds: dict[str, _Node]) -> Encode:
    def encode(value: Any) -> Any:
        for node in kinds.values():
            try:
                return node.encode(value)
            except MappingError:
                continue
        raise MappingError(f"{type(value).__name__} is none of {sorted(kinds)}")

    return encode


def _record_encoder(plan: list[tuple[str, _Node, bool]]) -> Encode:
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


def _record_decoder(plan: list[tuple[str, _Node, bool]]) -> Encode:
    def decode(datum: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for prop, node, optional in plan:
            raw = datum.get(prop)
            if optional and raw is None:
                continue  # absent
            out[prop] = node.decode(raw)
        return out

    return decode
