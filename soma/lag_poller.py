"""The lag exporter's broker clients, isolated in a child process: a crash costs one poll.

librdkafka crashed the exporter here during broker restarts (SIGSEGV, with admin and consumer
clients alive across the restart). The reads therefore run in one long-lived spawned child;
when it dies the pool is rebuilt and the poll counts as failed, while the exporter keeps
serving its last values. After a failed read the child drops its clients (at most every
RESET_EVERY_S): after a broker restart the old admin client kept timing out, fresh ones did not.
"""

from __future__ import annotations

import asyncio
import faulthandler
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from soma.settings import Settings
from state.lag import GroupTopics, LagReader, LagReport

RESET_EVERY_S = 10.0

_reader: LagReader | None = None
_reset_at = 0.0


class PollFailed(Exception):
    """A read failed in the child; carries the original error as text (always picklable)."""


def _init_child() -> None:
    faulthandler.enable()  # a crash inside librdkafka leaves a traceback in the log


def _read(settings: Settings, groups: list[GroupTopics], dlqs: list[str]) -> LagReport:
    global _reader, _reset_at
    if _reader is None:
        _reader = LagReader(settings)
    try:
        return _reader.read(groups, dlqs)
    except Exception as exc:
        if time.monotonic() - _reset_at >= RESET_EVERY_S:
            _reset_at = time.monotonic()
            old, _reader = _reader, None
            old.close()
        raise PollFailed(f"{type(exc).__name__}: {exc}") from None


class IsolatedPoller:
    """Runs `LagReader.read` in a spawned child process, rebuilt when it dies."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: forking a process that runs librdkafka threads is unsafe.
            context: Any = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(1, mp_context=context, initializer=_init_child)
        return self._pool

    async def read(self, groups: list[GroupTopics], dlqs: list[str]) -> LagReport:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor(), _read, self.settings, groups, dlqs)
        except BrokenProcessPool:
            self.close()
            raise PollFailed("the poll process died; a fresh one polls next") from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
