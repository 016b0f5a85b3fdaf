"""Archive files: Avro object containers of one topic's records, self-describing in metadata."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import orjson

from processors.archive import SCHEMA_VERSION, archive_schema
from processors.avro_mapping import AvroMapping, avro_mapping
from processors.tenant_counts import OffsetRange
from soma.errors import SomaError


class NotAnArchive(SomaError):
    """The file is not a SomaStream archive (or one of an unknown version)."""


@dataclass(frozen=True)
class ArchiveFile:
    """What an archive holds, from its header: the topic, its JSON Schema, the ranges."""

    path: Path
    topic: str  # registry name
    physical_topic: str  # the name it was read from (prefix included)
    schema_id: str
    json_schema: dict[str, Any]  # as it was at export: the typed values follow it
    ranges: tuple[OffsetRange, ...]
    tenant: str | None
    exported_at: str

    @property
    def mapping(self) -> AvroMapping:
        return avro_mapping(self.json_schema, self.schema_id)

    @property
    def schema_sha256(self) -> str:
        return schema_sha256(self.json_schema)


def schema_sha256(json_schema: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(json_schema, option=orjson.OPT_SORT_KEYS)).hexdigest()


def file_schema(schema_id: str, json_schema: dict[str, Any]) -> tuple[AvroMapping, dict[str, Any]]:
    """The value mapping derived from the topic's JSON Schema, and the file's Avro schema."""
    mapping = avro_mapping(json_schema, schema_id)
    return mapping, archive_schema(mapping)


def metadata(
    *,
    topic: str,
    physical_topic: str,
    schema_id: str,
    json_schema: dict[str, Any],
    ranges: tuple[OffsetRange, ...],
    tenant: str | None,
    job_id: str,
) -> dict[str, str]:
    """The file header's `soma.*` entries (Avro metadata values are strings)."""
    return {
        "soma.format": SCHEMA_VERSION,
        "soma.topic": topic,
        "soma.physical_topic": physical_topic,
        "soma.schema": schema_id,
        "soma.json_schema": json.dumps(json_schema, separators=(",", ":")),
        "soma.json_schema_sha256": schema_sha256(json_schema),
        "soma.ranges": json.dumps([r.to_dict() for r in ranges]),
        "soma.tenant": tenant or "",
        "soma.job_id": job_id,
        "soma.exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def read_header(path: Path) -> ArchiveFile:
    """The archive's description; NotAnArchive when the file is something else."""
    try:
        with path.open("rb") as handle:
            meta = fastavro.reader(handle).metadata
    except (OSError, ValueError) as exc:
        raise NotAnArchive(f"{path}: not an Avro object container file ({exc})") from None
    if meta.get("soma.format") != SCHEMA_VERSION:
        raise NotAnArchive(f"{path}: not a SomaStream archive of format {SCHEMA_VERSION}")
    return ArchiveFile(
        path=path,
        topic=meta["soma.topic"],
        physical_topic=meta["soma.physical_topic"],
        schema_id=meta["soma.schema"],
        json_schema=json.loads(meta["soma.json_schema"]),
        ranges=tuple(OffsetRange(**r) for r in json.loads(meta["soma.ranges"])),
        tenant=meta.get("soma.tenant") or None,
        exported_at=meta["soma.exported_at"],
    )
