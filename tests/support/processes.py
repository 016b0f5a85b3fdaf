"""Run real plane processes (the gateway under uvicorn) for tests, and await conditions."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import httpx

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_worker_base(size: int | None = None) -> int:
    """A SOMA_WORKER_BASE_PORT for a whole plane: `size` free ports from it (by default the
    block of every flow, soma/plane.py), and the one below (the lag exporter's,
    SOMA_LAG_EXPORTER_PORT's default)."""
    if size is None:
        from flows.catalog import flow_specs
        from soma.plane import PORTS_PER_FLOW

        size = PORTS_PER_FLOW * len(flow_specs())
    for _ in range(50):
        base = random.randrange(20000, 60000, 16)
        if all(port_free(port) for port in range(base - 1, base + size)):
            return base
    raise RuntimeError("no free block of ports")


def wait_until(
    probe: Callable[[], T | None], timeout_s: float, what: str, interval_s: float = 0.2
) -> T:
    """Poll `probe` until it returns a truthy value; TimeoutError names `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what} (last: {last!r})")


@contextmanager
def running_gateway(
    env: dict[str, str], log_path: Path | None = None, unset: tuple[str, ...] = ()
) -> Iterator[str]:
    """A real gateway process (uvicorn) with `env` added and `unset` removed; yields its URL."""
    port = free_port()
    full_env = {**os.environ, **env, "SOMA_GATEWAY_PORT": str(port)}
    for name in unset:
        full_env.pop(name, None)
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "gateway.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"gateway exited with {proc.returncode}")
        try:
            return httpx.get(f"{base}/docs", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, 60, "the gateway to serve /docs")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log_path and not isinstance(log, int):
            log.close()
