"""The gateway process against its own OpenAPI document, with schemathesis.

A real gateway and a session-counts worker (the state route answers from it) run on a fresh
topic set; schemathesis generates valid and invalid requests for every documented operation
with an admin token and fails on any server error, undocumented status, schema-valid request
refused, schema-invalid request accepted, or body that does not match its documented schema.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.catalog import flow_specs
from soma.settings import Settings
from tests.conftest import TEST_JWT_KEYS, TokenFactory
from tests.integration.conftest import TopicSetFactory
from tests.support.flows import WorkerProcess
from tests.support.processes import free_port, running_gateway
from tests.support.somabrain import StandIn

pytestmark = pytest.mark.contract

CONFIG = Path(__file__).with_name("schemathesis.toml")
# Per operation; with the coverage phase this is about 4,000 requests in about a minute here.
MAX_EXAMPLES = int(os.environ.get("SOMA_CONTRACT_EXAMPLES", "25"))
ST = Path(sys.executable).with_name("st")


@pytest.fixture
def plane(
    topic_set_factory: TopicSetFactory, tmp_path: Path, standin: StandIn
) -> Iterator[tuple[str, Settings]]:
    """A gateway and a worker of every flow with state pages, over every topic, under a fresh
    prefix (the gateway's state reads look for each flow's default group)."""
    settings, _ = topic_set_factory(stack_dir=tmp_path)
    # The write-through worker (it serves GET /v1/agents/profiles) writes to the SomaBrain
    # stand-in: against Postgres the fuzzed memory writes that Postgres cannot store (a NUL
    # inside a payload string) are dead-lettered, 100 in a row halt the flow as they should,
    # and the route then answers its documented 503, which the no-5xx check counts as a failure.
    backend = {
        "write-through": {"SOMA_BASE_URL": standin.url, "SOMA_API_TOKEN": standin.token},
    }
    workers = [
        WorkerProcess(
            spec.name,
            settings,
            f"{settings.topic_prefix}{spec.app_id}",
            free_port(),
            tmp_path / spec.name,
            tmp_path / f"{spec.name}.log",
            env=backend.get(spec.name, {}),
        )
        for spec in flow_specs()
        if spec.state_pages
    ]
    env = {
        "SOMA_TOPIC_PREFIX": settings.topic_prefix,
        "SOMA_STACK_DIR": str(tmp_path),
        "SOMA_JWT_KEYS": json.dumps(TEST_JWT_KEYS),
        "SOMA_JWT_ACTIVE_KID": settings.jwt_active_kid,
    }
    for worker in workers:
        worker.start()
    try:
        for worker in workers:
            worker.wait_ready()
        with running_gateway(env, tmp_path / "gateway.log") as base:
            yield base, settings
    finally:
        for worker in workers:
            worker.stop()


def test_the_gateway_keeps_its_openapi_contract(
    plane: tuple[str, Settings], token_factory: TokenFactory, tmp_path: Path
) -> None:
    base, settings = plane
    token = token_factory(settings, tenant=f"c{uuid.uuid4().hex[:8]}", roles=["admin"])
    run = subprocess.run(
        [
            str(ST),
            "--config-file",
            str(CONFIG),
            "--no-color",
            "run",
            f"{base}/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--phases",
            "examples,coverage,fuzzing",
            # One worker: with two, concurrent ast.parse calls inside hypothesis (describing the
            # filters schemathesis builds) tripped CPython 3.11's shared AST recursion counter
            # ("AST constructor recursion depth mismatch"), failing the run on no request at all.
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--report",
            "junit",
            "--report-junit-path",
            str(tmp_path / "schemathesis.xml"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    output = run.stdout + run.stderr
    (tmp_path / "schemathesis.out").write_text(output)  # the whole report, for a long failure list
    summary = re.search(r"(\d+) generated, (.*)", output)
    print(summary.group(0) if summary else output[-2000:])
    assert run.returncode == 0, output[-20_000:]
    assert summary is not None and int(summary.group(1)) > 1000, output[-2000:]
    assert "failure" not in summary.group(2), summary.group(0)
