"""Replay sink into an Avro object container file, written to `<path>.part` and renamed."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import fastavro

from flows.jobs.sinks import Writer
from flows.jobs.sources import Record
from processors.archive import datum
from processors.avro_mapping import AvroMapping
from processors.replay import ReplayTally


class ArchiveWriter(Writer):
    """Records into an Avro object container file, written to `<path>.part` and renamed."""

    def __init__(
        self,
        path: Path,
        schema: dict[str, Any],
        mapping: AvroMapping,
        metadata: dict[str, str],
        tally: ReplayTally,
        codec: str = "deflate",
    ) -> None:
        self.path, self.mapping, self.tally = path, mapping, tally
        self._partial = path.with_name(path.name + ".part")
        self._file = self._partial.open("wb")
        self._writer = fastavro.write.Writer(
            self._file, fastavro.parse_schema(schema), codec=codec, metadata=metadata
        )
        self.closed = False

    def write_batch(self, items: list[Record]) -> None:
        write, mapping = self._writer.write, self.mapping
        raw = 0
        for record in items:
            value = record.value()
            data, typed = datum(
                partition=cast(int, record.partition()),
                offset=cast(int, record.offset()),
                timestamp_ms=record.timestamp()[1],
                key=record.key(),
                raw=value,
                headers=record.headers() or [],
                value=mapping,
            )
            write(data)
            raw += not typed and value is not None
        self.tally.written += len(items)
        self.tally.raw += raw

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._writer.flush()
        self._file.close()
        self._partial.replace(self.path)

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self._file.close()
            self._partial.unlink(missing_ok=True)
