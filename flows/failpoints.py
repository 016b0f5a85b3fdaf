"""Crash points for fault tests: `SOMA_FAILPOINT=<name>:<n>[:raise]` fails at the n-th pass.

By default the process exits like kill -9; with `:raise` the step raises instead (a failure of
the commit step itself, which the kit must turn into an exit without acking). Inert (one
comparison) unless the variable is set. They put a failure exactly between two steps of the
commit order, where a real kill -9 lands only by luck.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass

EXIT_FAILPOINT = 137  # what a shell reports for SIGKILL, so tests treat both alike

AFTER_OUTPUTS_DURABLE = "after-outputs-durable"  # step 2 done, tables not yet written
AFTER_LOCAL_WRITE = "after-local-write"  # tables written locally, changelog not yet durable
AFTER_CHANGELOG_DURABLE = "after-changelog-durable"  # step 3 done, events not yet acked


class FailpointError(RuntimeError):
    """Raised by an armed failpoint in `raise` mode."""


@dataclass(frozen=True)
class _Armed:
    name: str
    nth: int
    mode: str  # "exit" | "raise"


def _parse(spec: str | None) -> _Armed | None:
    if not spec:
        return None
    name, _, rest = spec.partition(":")
    nth, _, mode = rest.partition(":")
    return _Armed(name, int(nth or "1"), mode or "exit")


_armed = _parse(os.environ.get("SOMA_FAILPOINT"))
_passes: Counter[str] = Counter()


def failpoint(name: str) -> None:
    """Fail here if `name` is armed and this is its n-th pass."""
    if _armed is None or _armed.name != name:
        return
    _passes[name] += 1
    if _passes[name] != _armed.nth:
        return
    if _armed.mode == "raise":
        raise FailpointError(f"failpoint {name} pass {_armed.nth}")
    os._exit(EXIT_FAILPOINT)
