"""Crash points for fault tests: `SOMA_FAILPOINT=<name>:<n>` exits like kill -9 at the n-th pass.

Inert (one dict lookup) unless the variable is set. They put a crash exactly between two steps
of the commit order, where a real kill -9 lands only by luck.
"""

from __future__ import annotations

import os
from collections import Counter

EXIT_FAILPOINT = 137  # what a shell reports for SIGKILL, so tests treat both alike

AFTER_LOCAL_WRITE = "after-local-write"  # step 1 done, changelog records not yet sent
AFTER_CHANGELOG_DURABLE = "after-changelog-durable"  # step 2 done, events not yet acked


def _parse(spec: str | None) -> tuple[str, int] | None:
    if not spec:
        return None
    name, _, nth = spec.partition(":")
    return name, int(nth or "1")


_armed = _parse(os.environ.get("SOMA_FAILPOINT"))
_passes: Counter[str] = Counter()


def failpoint(name: str) -> None:
    """Exit the process without any clean-up if `name` is armed and this is its n-th pass."""
    if _armed is None or _armed[0] != name:
        return
    _passes[name] += 1
    if _passes[name] == _armed[1]:
        os._exit(EXIT_FAILPOINT)
