"""Run the SomaBrain stand-in (tests/support/somabrain_standin.py) as a real HTTP server process."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.processes import free_port, wait_until

REPO = Path(__file__).resolve().parents[2]


@dataclass
class StandIn:
    """One stand-in process: its URL, token, and switches for its faults."""

    token: str = "standin-test-token"
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log_path: Path | None = None) -> StandIn:
        env = {**os.environ, "SOMABRAIN_STANDIN_TOKEN": self.token}
        log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "tests.support.somabrain_standin:app",
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        if not isinstance(log, int):
            log.close()
        wait_until(self._up, 30, f"the SomaBrain stand-in on {self.url}")
        return self

    def _up(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"stand-in exited with {self.proc.returncode}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def fault(self, mode: str = "none", **kwargs: Any) -> None:
        """Switch a fault on (`slow`, `breaker_open`, `rate_limited`, `bad_gateway`, ...)."""
        response = httpx.post(f"{self.url}/_standin/faults", json={"mode": mode, **kwargs})
        response.raise_for_status()

    def link_api(self, enabled: bool) -> None:
        httpx.post(f"{self.url}/_standin/link-api", params={"enabled": enabled}).raise_for_status()

    def requests(self, path_suffix: str = "") -> list[dict[str, Any]]:
        seen = httpx.get(f"{self.url}/_standin/requests").json()
        return [r for r in seen if r["path"].endswith(path_suffix)]

    def items(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = httpx.get(f"{self.url}/_standin/items").json()
        return items
