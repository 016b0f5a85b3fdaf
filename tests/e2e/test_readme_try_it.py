"""The README's "Try it" block, run by bash as written, against a running plane.

The plane is a gateway process and a session-counts worker (so the state line answers 200)
on a fresh topic set, and a fresh stack dir whose per-install signing key `soma stack up`
would have generated: `soma token` signs with it and the gateway verifies with it, with no
SOMA_JWT_KEYS anywhere. The one edit to the block is the port: 8080 belongs to whoever runs
the plane on this machine, so the commands go to this test's gateway instead.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from soma.secrets import ensure_secret
from soma.settings import DEV_JWT_SECRET, Settings
from tests.integration.conftest import TopicSetFactory
from tests.support.flows import WorkerProcess
from tests.support.processes import free_port, running_gateway, wait_until

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
_JWT_ENV = ("SOMA_JWT_KEYS", "SOMA_JWT_ACTIVE_KID")


def try_it_block() -> str:
    """The bash block under the README's "## Try it" heading."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Try it", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    assert match, "README.md: no ```bash block under ## Try it"
    return match.group(1)


def json_documents(text: str) -> list[Any]:
    """The JSON documents curl printed back to back (curl -s adds no newline)."""
    decoder, documents, position = json.JSONDecoder(), [], 0
    while position < len(text):
        if text[position].isspace():
            position += 1
            continue
        document, position = decoder.raw_decode(text, position)
        documents.append(document)
    return documents


@pytest.fixture
def plane(topic_set_factory: TopicSetFactory, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    settings, _ = topic_set_factory(["conversation.inbound", "conversation.inbound.dlq"])
    stack_dir = tmp_path / "stack"
    ensure_secret(stack_dir, DEV_JWT_SECRET)  # what `make up` (soma stack up) does
    worker = WorkerProcess(
        "session-counts",
        Settings(topic_prefix=settings.topic_prefix, stack_dir=stack_dir),
        f"{settings.topic_prefix}soma-session-counts",
        free_port(),
        tmp_path / "worker",
        tmp_path / "worker.log",
    ).start()
    env = {"SOMA_TOPIC_PREFIX": settings.topic_prefix, "SOMA_STACK_DIR": str(stack_dir)}
    try:
        worker.wait_ready()
        with running_gateway(env, tmp_path / "gateway.log", unset=_JWT_ENV) as base:
            yield base, stack_dir
    finally:
        worker.stop()


def test_readme_try_it_runs_as_written(plane: tuple[str, Path]) -> None:
    base, stack_dir = plane
    port = base.rsplit(":", 1)[1]
    block = try_it_block()
    assert block.count("localhost:8080") == 3, block
    script = "set -euo pipefail\n" + block.replace("localhost:8080", f"localhost:{port}")
    env = {k: v for k, v in os.environ.items() if k not in _JWT_ENV}
    env["SOMA_STACK_DIR"] = str(stack_dir)
    run = subprocess.run(
        ["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr
    accepted, state, health = json_documents(run.stdout)
    assert accepted["session_id"] == "s1" and accepted["offset"] >= 0, accepted
    # The worker may not have counted the message yet when the next line runs; it answers.
    assert (state["tenant"], state["session_id"]) == ("t1", "s1"), state
    assert state["count"] in (0, 1), state
    assert health["status"] in ("ok", "degraded"), health
    # And the message is counted: the plane the README talks about really works.
    token = subprocess.run(
        [".venv/bin/soma", "token", "--tenant", "t1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()

    def counted() -> bool:
        response = httpx.get(
            f"{base}/v1/state/session-events/s1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
        return response.status_code == 200 and response.json()["count"] == 1

    wait_until(counted, timeout_s=60, what="the worker to count the README's message")


def test_soma_token_takes_the_tenant_either_way_and_caps_the_lifetime(tmp_path: Path) -> None:
    stack_dir = tmp_path / "stack"
    ensure_secret(stack_dir, DEV_JWT_SECRET)
    env = {k: v for k, v in os.environ.items() if k not in _JWT_ENV}
    env["SOMA_STACK_DIR"] = str(stack_dir)

    def soma_token(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [".venv/bin/soma", "token", *args], cwd=REPO, env=env, capture_output=True, text=True
        )

    assert soma_token("t1").returncode == 0
    assert soma_token("--tenant", "t1", "--admin").returncode == 0
    refused = soma_token("t1", "--tenant", "t2")
    assert refused.returncode == 2 and "two different tenants" in refused.stderr
    too_long = soma_token("--tenant", "t1", "--ttl", str(10**9))
    assert too_long.returncode == 2 and "at most" in too_long.stderr
