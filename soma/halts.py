"""Where a flow worker halted by its dead-letter limit leaves its reason for `soma status`."""

from __future__ import annotations

import json
import time
from pathlib import Path

EXIT_HALTED = 78  # EX_CONFIG: the supervisor does not restart it; an operator must act


def halted_path(stack_dir: Path, app_id: str, port: int) -> Path:
    return stack_dir / "run" / "halted" / f"{app_id}@{port}.json"


def record_halt(stack_dir: Path, app_id: str, port: int, flow: str, reason: str) -> None:
    path = halted_path(stack_dir, app_id, port)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"flow": flow, "reason": reason, "at": time.time()}))


def read_halted(stack_dir: Path, app_id: str, port: int) -> dict[str, object] | None:
    """The halt reason a worker left, or None."""
    try:
        loaded: dict[str, object] = json.loads(halted_path(stack_dir, app_id, port).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return loaded


def clear_halted(stack_dir: Path, app_id: str, port: int) -> None:
    """A (re)started worker is no longer halted."""
    halted_path(stack_dir, app_id, port).unlink(missing_ok=True)
