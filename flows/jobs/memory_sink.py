"""Replay sink into a memory backend (the primary or the replica), idempotent on the memory key."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

import orjson

from flows.jobs.sinks import MAX_ATTEMPTS, RETRY, ReplayFailed, Writer, where
from flows.jobs.sources import Record
from processors.memory import MemoryWrite
from processors.replay import ReplayTally
from processors.replication import replica_write
from schemas import SchemaValidationError, validator
from soma.errors import TransientError
from soma.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


class BackendWriter(Writer):
    """WAL records into a memory backend (the primary or the replica), idempotent on the key.

    The backend is asyncio-based: it runs on a private event loop in a thread, and each batch
    waits for its answer.
    """

    def __init__(self, settings: Settings, backend: Any, tally: ReplayTally) -> None:
        self.namespace, self.backend, self.tally = settings.namespace, backend, tally
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def _run(self, coroutine: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()  # type: ignore[arg-type]

    def write_batch(self, items: list[Record]) -> None:
        writes: list[tuple[Record, MemoryWrite]] = []
        for record in items:
            try:
                wal: Mapping[str, Any] = orjson.loads(record.value() or b"null")
                validator("memory_wal")(wal)
                writes.append((record, replica_write(wal, default_namespace=self.namespace)))
            except (orjson.JSONDecodeError, SchemaValidationError, ValueError, KeyError) as exc:
                self.tally.refuse(where(record), f"not a memory write: {exc}")
        for start in range(0, len(writes), 500):
            self._store(writes[start : start + 500])

    def _store(self, writes: list[tuple[Record, MemoryWrite]]) -> None:
        from state.memory.errors import BackendRejected

        attempt = 0
        while writes:
            try:
                results = self._run(self.backend.remember_batch([w for _, w in writes]))
            except BackendRejected as exc:
                index = exc.index if exc.index is not None and len(writes) > 1 else 0
                record, _ = writes.pop(index)
                self.tally.refuse(where(record), f"backend refused: {exc}")
                continue
            except TransientError as exc:
                attempt += 1
                if attempt >= MAX_ATTEMPTS:
                    raise ReplayFailed(f"the backend stayed unavailable: {exc}") from exc
                log.warning("backend unavailable (%s); retry %d", exc, attempt)
                time.sleep(RETRY.delay(attempt, random.random))
                continue
            self.tally.written += len(results)
            self.tally.present += sum(1 for r in results if r.deduplicated)
            return

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._run(self.backend.aclose())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()
