"""The plane keeps itself running: kill -9 a flow worker and the gateway under `soma up`.

The supervisor restarts each, `soma status` says what happened at every step, and the counts
the flow keeps stay exact over everything that reached the topic.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gateway.auth import issue_token
from soma.plane import plane_processes
from soma.settings import Settings
from soma.supervise import Supervisor
from tests.conftest import TEST_JWT_KEYS
from tests.support.flows import read_topic, wait_committed
from tests.support.processes import free_port, free_worker_base, wait_until
from topics.admin import apply_topics, delete_topics
from topics.registry import TopicRegistry

pytestmark = [pytest.mark.fault, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
SESSIONS = [f"s{i}" for i in range(8)]


@dataclass
class Plane:
    settings: Settings
    env: dict[str, str]

    def soma(self, *args: str, timeout_s: float = 180) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "soma.cli", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def status(self) -> dict[str, dict[str, str]]:
        """`soma status`, parsed: process -> state, pid, uptime, restarts, last_exit."""
        rows = {}
        for line in self.soma("status").splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 6 and not parts[0].endswith(":"):  # not the `prometheus:` line
                name, state, pid, uptime, restarts, last_exit = parts[:6]
                rows[name] = {
                    "state": state,
                    "pid": pid,
                    "uptime": uptime,
                    "restarts": restarts,
                    "last_exit": last_exit,
                }
        return rows

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.settings.gateway_port}"


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[Plane]:
    prefix = f"p{uuid.uuid4().hex[:8]}."
    env = {
        **os.environ,
        "SOMA_TOPIC_PREFIX": prefix,
        "SOMA_STACK_DIR": str(tmp_path / "stack"),
        "SOMA_GATEWAY_PORT": str(free_port()),
        "SOMA_WORKER_BASE_PORT": str(free_worker_base()),
        "SOMA_JWT_KEYS": json.dumps(TEST_JWT_KEYS),
        "SOMA_JWT_ACTIVE_KID": "k2",
    }
    settings = Settings(
        topic_prefix=prefix,
        stack_dir=tmp_path / "stack",
        gateway_port=int(env["SOMA_GATEWAY_PORT"]),
        worker_base_port=int(env["SOMA_WORKER_BASE_PORT"]),
        jwt_keys=TEST_JWT_KEYS,
        jwt_active_kid="k2",
    )
    topics = list(TopicRegistry(prefix))
    apply_topics(settings, topics)
    plane = Plane(settings, env)
    try:
        yield plane
    finally:
        Supervisor(settings).down()
        delete_topics(settings, [t.name for t in topics])


def test_supervisor_restarts_killed_processes_and_status_tells_the_truth(plane: Plane) -> None:
    plane.soma("up")
    status = plane.status()
    # Every process the specs derive, no more, no less.
    assert set(status) == {p.name for p in plane_processes(plane.settings)}
    assert {
        "gateway",
        "lag-exporter",
        "flow-session-counts-1",
        "flow-dlq-index-1",
        "flow-write-through-1",
    } <= set(status)
    assert all(row["state"] == "running" and row["restarts"] == "0" for row in status.values())

    token = issue_token(plane.settings, "acme")
    accepted: Counter[str] = Counter()
    client = httpx.Client(
        base_url=plane.gateway, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )

    def post(n: int) -> None:
        """n messages, each retried until the gateway accepts it (it may be restarting)."""
        for i in range(n):
            session = SESSIONS[i % len(SESSIONS)]

            def sent(session: str = session) -> bool:
                try:
                    response = client.post(
                        "/v1/session/message", json={"session_id": session, "message": "hi"}
                    )
                except httpx.HTTPError:
                    return False
                assert response.status_code < 500 or response.status_code == 503, response.text
                return response.status_code in (200, 202)

            wait_until(sent, timeout_s=60, what="the gateway to accept a message", interval_s=0.1)
            accepted[session] += 1

    post(80)
    # kill -9 the flow worker: supervisord restarts it; status says so at each step.
    worker_pid = int(status["flow-session-counts-1"]["pid"])
    os.kill(worker_pid, 9)
    post(40)  # the gateway keeps accepting while the worker is down
    restarted = wait_until(
        lambda: (
            (row := plane.status()["flow-session-counts-1"])["state"] == "running"
            and row["pid"] != str(worker_pid)
            and row
        ),
        timeout_s=60,
        what="the worker restarted",
    )
    assert restarted["restarts"] == "1" and restarted["last_exit"] == "SIGKILL"

    # kill -9 the gateway: same.
    gateway_pid = int(plane.status()["gateway"]["pid"])
    os.kill(gateway_pid, 9)
    post(40)  # retried until the restarted gateway answers
    row = wait_until(
        lambda: (r := plane.status()["gateway"])["state"] == "running" and r,
        timeout_s=60,
        what="the gateway restarted",
    )
    assert row["restarts"] == "1" and row["last_exit"] == "SIGKILL"
    assert row["pid"] != str(gateway_pid)

    # Effects exact: the flow's counts equal what is on the topic, and every accepted
    # message is there (a request cut by the kill may have been stored without its 2xx).
    source = plane.settings.topic_prefix + "conversation.inbound"
    wait_committed(plane.settings, f"{plane.settings.topic_prefix}soma-session-counts", source)
    on_topic = Counter(
        r.key().decode().split("/", 1)[1] for r in read_topic(plane.settings, source)
    )
    assert all(on_topic[s] >= accepted[s] for s in SESSIONS)

    def counts() -> dict[str, int] | None:
        answers = {}
        for session in SESSIONS:
            response = client.get(f"/v1/state/session-events/{session}")
            if response.status_code != 200:
                assert response.status_code == 503 and response.headers["Retry-After"]
                return None
            answers[session] = response.json()["count"]
        return answers

    assert wait_until(counts, timeout_s=60, what="state reads") == {
        s: on_topic[s] for s in SESSIONS
    }
    client.close()

    plane.soma("down")
    assert "supervisor not running" in plane.soma("status")
