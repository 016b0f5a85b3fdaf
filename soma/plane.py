"""Run the plane's long-lived processes (gateway, flow workers) in the background with pidfiles."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from soma.settings import Settings


@dataclass(frozen=True)
class PlaneProcess:
    """One background process of the plane and the command that runs it."""

    name: str
    args: tuple[str, ...]
    url: str


def plane_processes(settings: Settings) -> list[PlaneProcess]:
    """Everything `make up` runs after the stack: the gateway and every always-on flow."""
    soma = (sys.executable, "-m", "soma.cli")
    port = settings.worker_base_port
    return [
        PlaneProcess(
            "gateway",
            (*soma, "gateway", "serve"),
            f"http://{settings.gateway_host}:{settings.gateway_port}/docs",
        ),
        PlaneProcess(
            "flow-session-counts",
            (*soma, "flow", "run", "session-counts", "--port", str(port)),
            f"http://{settings.worker_host}:{port}/ready",
        ),
    ]


def _pidfile(settings: Settings, name: str) -> Path:
    return settings.stack_dir / "run" / f"{name}.pid"


def running_pid(settings: Settings, name: str) -> int | None:
    """The pid of a live process we started, or None (a stale pidfile is removed)."""
    path = _pidfile(settings, name)
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError):
        return None
    except ProcessLookupError:
        path.unlink(missing_ok=True)
        return None
    return pid


def start(settings: Settings, process: PlaneProcess) -> tuple[int, bool]:
    """Start `process` detached unless it already runs; returns (pid, started_now)."""
    pid = running_pid(settings, process.name)
    if pid is not None:
        return pid, False
    logs = settings.stack_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    _pidfile(settings, process.name).parent.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{process.name}.log", "ab") as log:
        child = subprocess.Popen(
            process.args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _pidfile(settings, process.name).write_text(str(child.pid))
    return child.pid, True


def stop(settings: Settings, name: str, timeout_s: float = 20.0) -> bool:
    """SIGTERM, then SIGKILL after `timeout_s`; returns whether something was running."""
    pid = running_pid(settings, name)
    if pid is None:
        return False
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.killpg(pid, signal.SIGKILL)
    _pidfile(settings, name).unlink(missing_ok=True)
    return True
