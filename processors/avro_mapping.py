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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from processors.avro_nodes import (
    JSON_TEXT,
    PRIMITIVE,
    Encode,
    MappingError,
    Node,
    absent_or_json,
    any_of,
    json_text,
    none,
    record_decoder,
    record_encoder,
    same,
    with_null,
)

__all__ = ["JSON_TEXT", "AvroMapping", "MappingError", "avro_mapping"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SCALARS = {"string", "integer", "number", "boolean", "null"}


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


class _Compiler:
    def __init__(self, root: Mapping[str, Any], name: str) -> None:
        self.root, self.prefix = root, name
        self._names: set[str] = set()

    def node(self, schema: Mapping[str, Any], path: str) -> Node:
        if "$ref" in schema:
            ref = schema["$ref"]
            if not ref.startswith("#/$defs/"):
                return json_text()
            return self.node(self.root["$defs"][ref.removeprefix("#/$defs/")], path)
        if "anyOf" in schema or "oneOf" in schema:
            options = [self._resolve(o) for o in schema.get("anyOf", schema.get("oneOf", []))]
            return self._scalars([t for o in options for t in _types(o)], schema)
        types = _types(schema)
        if "enum" in schema:
            if not all(isinstance(v, str) or v is None for v in schema["enum"]):
                return json_text()
            types = ["string"] + (["null"] if None in schema["enum"] else [])
        concrete = [t for t in types if t != "null"]
        if concrete == ["object"]:
            node = self._object(schema, path)
        elif concrete == ["array"] and isinstance(schema.get("items"), Mapping):
            node = self._array(schema["items"], path)
        else:
            return self._scalars(types, schema)
        return with_null(node) if "null" in types and not node.nullable else node

    def _resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        while "$ref" in schema and schema["$ref"].startswith("#/$defs/"):
            schema = self.root["$defs"][schema["$ref"].removeprefix("#/$defs/")]
        return schema

    def _scalars(self, types: list[str], schema: Mapping[str, Any]) -> Node:
        if not types or not set(types) <= _SCALARS or len(set(types)) != len(types):
            return json_text()
        concrete = [PRIMITIVE[t] for t in types if t != "null"]
        if not concrete:
            return Node(("null",), none, same, nullable=True)
        if len(concrete) == 1:
            node = concrete[0]
        else:  # e.g. string or integer: the Python type picks the branch
            kinds = {t: PRIMITIVE[t] for t in types if t != "null"}
            node = Node(tuple(b for n in kinds.values() for b in n.branches), any_of(kinds), same)
        return with_null(node) if "null" in types else node

    def _array(self, items: Mapping[str, Any], path: str) -> Node:
        item = self.node(items, f"{path}_item")

        def encode(value: Any) -> list[Any]:
            if not isinstance(value, list):
                raise MappingError(f"expected array, got {type(value).__name__}")
            return [item.encode(v) for v in value]

        def decode(value: list[Any]) -> list[Any]:
            return [item.decode(v) for v in value]

        return Node(({"type": "array", "items": item.avro},), encode, decode)

    def _object(self, schema: Mapping[str, Any], path: str) -> Node:
        extra = schema.get("additionalProperties", True)
        properties = schema.get("properties")
        if not properties and isinstance(extra, Mapping):
            return self._map(self.node(extra, f"{path}_value"))
        if not properties or extra is not False or not all(map(_NAME.match, properties)):
            return json_text()
        return self._record(properties, set(schema.get("required", ())), path)

    def _map(self, value: Node) -> Node:
        def encode(data: Any) -> dict[str, Any]:
            if not isinstance(data, dict):
                raise MappingError(f"expected object, got {type(data).__name__}")
            return {str(k): value.encode(v) for k, v in data.items()}

        def decode(data: dict[str, Any]) -> dict[str, Any]:
            return {k: value.decode(v) for k, v in data.items()}

        return Node(({"type": "map", "values": value.avro},), encode, decode)

    def _record(self, properties: Mapping[str, Any], required: set[str], path: str) -> Node:
        name = self._record_name(path)
        fields, plan = [], []
        for prop, sub in properties.items():
            node = self.node(sub, f"{path}_{prop}")
            optional = prop not in required
            if optional and (node.nullable or node.json):
                node = absent_or_json()  # absent is null, a present null the text "null"
            elif optional:
                node = with_null(node)
            field: dict[str, Any] = {"name": prop, "type": node.avro}
            if optional:
                field["default"] = None
            fields.append(field)
            plan.append((prop, node, optional))
        return Node(
            ({"type": "record", "name": name, "fields": fields},),
            record_encoder(plan),
            record_decoder(plan),
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
