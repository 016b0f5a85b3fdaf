"""What `soma status` says of one plane process, from supervisord's report (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

EXPECTED_EXITS = (0, 78)  # a clean stop, and a flow halted by its dead-letter limit


@dataclass(frozen=True)
class ProcessStatus:
    """One line of `soma status`."""

    name: str
    state: str  # running | starting | restarting | stopping | stopped | halted | crashed | absent
    pid: int | None
    uptime_s: int | None
    restarts: int
    last_exit: str | None  # "0", "78", "SIGKILL"; None while it never ended
    detail: str = ""


def describe(
    name: str,
    info: Mapping[str, Any] | None,
    *,
    starts: int,
    last_exit: str | None = None,
    halted_reason: str | None = None,
) -> ProcessStatus:
    """The status of `name` from supervisord's process info (None: it is not supervised).

    `starts` counts the process's starts since `soma up`; every start after the first is a
    restart. `last_exit` is how it last ended, as supervisord logged it ("exit status 70",
    "terminated by SIGKILL"), None if it never did.
    """
    restarts = max(starts - 1, 0)
    code = _exit_code(last_exit)
    if info is None:
        return ProcessStatus(name, "absent", None, None, restarts, code, "not supervised")
    statename = str(info.get("statename", "UNKNOWN"))
    pid = int(info.get("pid") or 0) or None
    uptime = None
    if statename == "RUNNING" and info.get("start") and info.get("now"):
        uptime = max(int(info["now"]) - int(info["start"]), 0)
    if statename == "RUNNING":
        state = "running"
    elif statename == "STARTING":
        state = "restarting" if starts > 1 else "starting"
    elif statename == "BACKOFF":
        state = "restarting"
    elif statename == "STOPPING":
        state = "stopping"
    elif statename == "STOPPED":
        state = "stopped"
    elif statename == "EXITED":
        if halted_reason is not None:
            state = "halted"
        elif code in {str(c) for c in EXPECTED_EXITS}:
            state = "stopped"
        else:
            state = "crashed"
    elif statename == "FATAL":
        state = "crashed"
    else:
        state = statename.lower()
    detail = ""
    if state == "halted":
        detail = f"halted: {halted_reason}"
    elif statename == "FATAL":
        detail = f"gave up restarting: {info.get('spawnerr') or info.get('description', '')}"
    elif statename == "BACKOFF":
        detail = str(info.get("spawnerr") or "start failed; retrying with backoff")
    return ProcessStatus(name, state, pid, uptime, restarts, code, detail)


def _exit_code(how: str | None) -> str | None:
    if how is None:
        return None
    how = how.strip()
    if how.startswith("exit status "):
        return how.removeprefix("exit status ")
    if how.startswith("terminated by "):
        return how.removeprefix("terminated by ").split()[0]
    return how


def format_uptime(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
