"""Archive records: a topic record as an Avro datum whose value is typed by the topic's schema.

Key, headers, partition, offset and timestamp are kept as they were. The value is the record
derived from the topic's JSON Schema (processors/avro_mapping.py) when it has that shape, else
its raw bytes (a tombstone is null), so an archive never drops a record and never invents one.
Export does not validate again (the producer did, and the mapping checks every type it
writes); importing validates every value against the topic's schema before producing it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from processors.avro_mapping import AvroMapping, MappingError
from processors.dead_letters import SourceRecord

NAMESPACE = "dev.somastream.archive"
SCHEMA_VERSION = "1"


def archive_schema(value: AvroMapping) -> dict[str, Any]:
    """The Avro schema of one archived record of a topic whose values map with `value`."""
    return {
        "type": "record",
        "name": "ArchivedRecord",
        "namespace": NAMESPACE,
        "doc": "One Kafka record of a SomaStream topic, as it was on the broker.",
        "fields": [
            {"name": "partition", "type": "int"},
            {"name": "offset", "type": "long"},
            {"name": "timestamp_ms", "type": "long"},
            {"name": "key", "type": ["null", "bytes"]},
            {
                "name": "headers",
                "type": {
                    "type": "array",
                    "items": {
                        "type": "record",
                        "name": "Header",
                        "fields": [
                            {"name": "name", "type": "string"},
                            {"name": "value", "type": ["null", "bytes"]},
                        ],
                    },
                },
            },
            {"name": "value", "type": ["null", value.schema, "bytes"]},
        ],
    }


def value_branch(value: AvroMapping) -> str:
    """The full name of the typed value branch (for fastavro's explicit union notation)."""
    return f"{NAMESPACE}.{value.schema['name']}"


def to_datum(record: SourceRecord, value: AvroMapping) -> tuple[dict[str, Any], bool]:
    """(the Avro datum of `record`, whether its value is typed rather than raw)."""
    return datum(
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp_ms,
        key=record.key,
        raw=record.value,
        headers=record.headers,
        value=value,
    )


def datum(
    *,
    partition: int,
    offset: int,
    timestamp_ms: int,
    key: bytes | None,
    raw: bytes | None,
    headers: Sequence[tuple[str, bytes | None]],
    value: AvroMapping,
) -> tuple[dict[str, Any], bool]:
    """`to_datum` from the record's parts (a consumed message need not become a SourceRecord)."""
    typed = None if raw is None else _typed(raw, value)
    return {
        "partition": partition,
        "offset": offset,
        "timestamp_ms": timestamp_ms,
        "key": key,
        "headers": [{"name": name, "value": data} for name, data in headers],
        # Tuple notation names the union branch, so fastavro does not test the record against
        # every branch (a second walk of the whole value).
        "value": (value_branch(value), typed) if typed is not None else raw,
    }, typed is not None


def _typed(raw: bytes, value: AvroMapping) -> Any:
    try:
        return value.to_avro(orjson.loads(raw))
    except (orjson.JSONDecodeError, MappingError):
        return None  # kept raw: not JSON, or not of the schema's shape


def from_datum(datum: Mapping[str, Any], value: AvroMapping, topic: str) -> SourceRecord:
    """The record an archived datum holds (its value JSON-equal to the original)."""
    stored = datum["value"]
    if isinstance(stored, dict):
        raw: bytes | None = orjson.dumps(value.from_avro(stored))
    else:
        raw = stored
    return SourceRecord(
        topic=topic,
        partition=int(datum["partition"]),
        offset=int(datum["offset"]),
        key=datum["key"],
        value=raw,
        headers=tuple((h["name"], h["value"]) for h in datum["headers"]),
        timestamp_ms=int(datum["timestamp_ms"]),
    )
