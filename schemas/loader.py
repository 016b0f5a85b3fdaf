"""Finding and reading the schema files shipped inside the package."""

from __future__ import annotations

import copy
import functools
import json
import re
from importlib import resources
from typing import Any

from schemas.errors import UnknownSchema

_ID = re.compile(r"[a-z][a-z0-9_]*")


@functools.cache
def _ids() -> tuple[str, ...]:
    root = resources.files(__package__)
    names = (entry.name for entry in root.iterdir() if entry.is_file())
    return tuple(sorted(name[: -len(".json")] for name in names if name.endswith(".json")))


def schema_ids() -> list[str]:
    """Ids of every schema in the package (file `schemas/<id>.json`), sorted."""
    return list(_ids())


@functools.cache
def _read(schema_id: str) -> dict[str, Any]:
    if not _ID.fullmatch(schema_id) or schema_id not in _ids():
        raise UnknownSchema(schema_id)
    text = resources.files(__package__).joinpath(f"{schema_id}.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def load_schema(schema_id: str) -> dict[str, Any]:
    """A copy of the schema `schema_id` (callers may mutate it); raises UnknownSchema."""
    return copy.deepcopy(_read(schema_id))


def shared_schema(schema_id: str) -> dict[str, Any]:
    """The cached schema itself, for the validators in this package; never mutate it."""
    return _read(schema_id)
