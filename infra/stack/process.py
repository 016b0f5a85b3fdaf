"""Daemons of the stack as processes: spawning detached, pidfiles, liveness, termination."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from infra.stack.errors import StackError

# Runs the daemon in the background of a throw-away shell and prints its pid: the daemon is then
# never a child of the Python process, so no zombie is left behind and no Popen object warns when
# it is garbage-collected (pytest turns ResourceWarning into an error).
_DETACH = 'log=$1; shift; "$@" </dev/null >>"$log" 2>&1 & echo $!'


def spawn_detached(
    argv: Sequence[str], log_path: Path, cwd: Path, env: Mapping[str, str] | None = None
) -> int:
    """Start argv in its own session, stdout/stderr appended to log_path; return its pid."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["sh", "-c", _DETACH, "sh", str(log_path), *argv],
        cwd=cwd,
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        start_new_session=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.strip().isdigit():
        output = done.stderr.strip() or done.stdout.strip()
        raise StackError(f"could not launch {argv[0]}: {output}")
    return int(done.stdout.strip())


def run(
    argv: Sequence[str],
    what: str,
    timeout: float = 120,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
) -> str:
    """Run a short command to completion; its stdout, or a StackError carrying its output."""
    try:
        done = subprocess.run(
            list(argv),
            input=stdin,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise StackError(f"{what}: {argv[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        command = " ".join(argv)
        raise StackError(f"{what}: `{command}` did not finish within {timeout:.0f} s") from exc
    if done.returncode != 0:
        output = (done.stderr.strip() + "\n" + done.stdout.strip()).strip()
        raise StackError(f"{what} failed (exit {done.returncode}): {output[-2000:]}")
    return done.stdout


def read_pid(pidfile: Path) -> int | None:
    """The pid on the first line of a pidfile (postmaster.pid has more lines), or None."""
    try:
        first = pidfile.read_text().splitlines()[0].strip()
    except (OSError, IndexError):
        return None
    return int(first) if first.isdigit() else None


def cmdline(pid: int) -> str:
    """The command line of a live process, space-joined; empty when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def is_alive(pid: int) -> bool:
    """True when the process exists and is not a zombie.

    No waitpid here: our daemons are never our children (see spawn_detached), and reaping a pid
    that happens to be some caller's child would steal its exit status.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name, which may itself hold spaces.
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def live_pid(pidfile: Path, marker: str) -> int | None:
    """The pid from pidfile if that process is alive and is ours (its cmdline contains marker).

    The marker guards against pid reuse after a reboot or a crash left a stale pidfile behind.
    """
    pid = read_pid(pidfile)
    if pid is None or not is_alive(pid) or marker not in cmdline(pid):
        return None
    return pid


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll predicate until it holds or timeout seconds pass; whether it held."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def terminate(pid: int, grace: float) -> bool:
    """SIGTERM, then SIGKILL after grace seconds; True when the process exited gracefully."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    if wait_until(lambda: not is_alive(pid), grace):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not wait_until(lambda: not is_alive(pid), 10):
        raise StackError(f"pid {pid} survived SIGKILL; inspect it with `ps -o stat,cmd -p {pid}`")
    return False


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, for error messages."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])
