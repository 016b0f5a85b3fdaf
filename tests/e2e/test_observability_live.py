"""Every dashboard query and alert signal, run on a live Prometheus scraping a plane under load.

The plane runs under `soma up` with isolated settings (topic prefix, ports, stack dir), and a
Prometheus of its own is started the way `soma stack up` starts the stack's, from the same
generated config and rules, scraping every second. While the gateway takes traffic (valid and
invalid requests, health probes), a poison record is dead-lettered and the Bytewax job runs,
every query must return series and every metric it names must be exported, except the
explicit list of metrics whose flows do not exist yet.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer

from flows.catalog import flow_specs
from flows.jobs.tenant_counts import run_job
from gateway.auth import issue_token
from infra.stack.prometheus import prometheus_url, start_prometheus, stop_prometheus
from soma.alerts import ALERTS
from soma.dashboards import all_queries
from soma.settings import Settings
from soma.supervise import Supervisor
from tests.conftest import TEST_JWT_KEYS
from tests.support.flows import delete_test_topics
from tests.support.processes import free_port, free_worker_base, wait_until
from topics.admin import apply_topics
from topics.registry import TopicRegistry

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]

# Queries allowed to return nothing (they must still evaluate): each names a flow that does
# not exist yet. Everything else on the dashboards and in the alerts must have live series.
NOT_EXPORTED_YET: dict[str, str] = {}
_SUFFIXES = ("_total", "_bucket", "_count", "_sum")


def _skipped(query: str) -> bool:
    return any(marker in query for marker in NOT_EXPORTED_YET)


@dataclass
class LivePlane:
    settings: Settings
    env: dict[str, str]
    prometheus: str

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.settings.gateway_port}"

    def soma(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "soma.cli", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; a PromQL error fails the test with Prometheus' message."""
        response = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        assert body["status"] == "success", f"{expr}: {body.get('error')}"
        result = body["data"]["result"]
        assert isinstance(result, list)
        return result


@pytest.fixture
def live_plane(tmp_path: Path) -> Iterator[LivePlane]:
    prefix = f"o{uuid.uuid4().hex[:8]}."
    stack_dir = tmp_path / "stack"
    values: dict[str, Any] = {
        "topic_prefix": prefix,
        "stack_dir": stack_dir,
        "gateway_port": free_port(),
        "worker_base_port": free_worker_base(),
        "prometheus_port": free_port(),
        "lag_poll_interval_s": 1.0,
        "jwt_keys": TEST_JWT_KEYS,
        "jwt_active_kid": "k2",
    }
    settings = Settings(**values)
    env = {
        **os.environ,
        **{f"SOMA_{k.upper()}": str(v) for k, v in values.items() if k != "jwt_keys"},
        "SOMA_JWT_KEYS": json.dumps(TEST_JWT_KEYS),
    }
    apply_topics(settings, list(TopicRegistry(prefix)))
    start_prometheus(settings, interval_s=2)  # also the scrape timeout: 1 s was tight here
    plane = LivePlane(settings, env, prometheus_url(settings))
    try:
        plane.soma("up")
        yield plane
    finally:
        Supervisor(settings).down()
        stop_prometheus(settings)
        delete_test_topics(settings, f"{prefix}soma-session-counts")


class Load:
    """Gateway traffic in a thread: messages of three tenants, some invalid, health probes."""

    def __init__(self, plane: LivePlane, max_requests: int = 20_000) -> None:
        self.plane, self.max_requests = plane, max_requests
        self.stop = threading.Event()
        self.accepted = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        tokens = {t: issue_token(self.plane.settings, t) for t in ("t1", "t2", "t3")}
        with httpx.Client(base_url=self.plane.gateway, timeout=10) as client:
            for i in range(self.max_requests):
                if self.stop.wait(0.02):  # paced: about 50 requests a second
                    return
                tenant = ("t1", "t2", "t3")[i % 3]
                headers = {"Authorization": f"Bearer {tokens[tenant]}"}
                if i % 25 == 0:  # refused at the edge: 422 names the missing field
                    client.post("/v1/session/message", json={"session_id": "s"}, headers=headers)
                elif i % 50 == 1:
                    client.get("/healthz")
                else:
                    body = {"session_id": f"s{i % 40}", "message": "load"}
                    response = client.post("/v1/session/message", json=body, headers=headers)
                    self.accepted += response.status_code == 202

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def _poison(settings: Settings) -> None:
    """A record that is not JSON, straight onto the flow's source: it must be dead-lettered."""
    topic = TopicRegistry(settings.topic_prefix).get("conversation.inbound").name
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    producer.produce(topic, b"not json", b"t1/poison", headers=[("tenant", b"t1")])
    assert producer.flush(30) == 0


def _metric_names(expr: str) -> set[str]:
    names = set()
    for name in re.findall(r"\bsoma_[a-z0-9_]+", expr):
        for suffix in _SUFFIXES:
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
        names.add(name)
    return names


def test_every_panel_and_alert_signal_has_live_series(live_plane: LivePlane) -> None:
    plane = live_plane
    panels = [(f"{uid} / {title}", q.expr) for uid, title, q in all_queries()]
    signals = [(f"alert {a.name}", c.signal) for a in ALERTS for c in a.conditions]
    checked = [(what, expr) for what, expr in panels + signals if not _skipped(expr)]

    with Load(plane) as load:
        _poison(plane.settings)
        report = run_job(plane.settings)  # Bytewax: writes its progress for the exporter
        assert report.events > 0

        def empty() -> list[str]:
            return [what for what, expr in checked if not plane.query(expr)]

        last: list[str] = []

        def all_have_series() -> bool:
            nonlocal last
            last = empty()
            return not last

        try:
            wait_until(
                all_have_series, timeout_s=120, what="every query to return series", interval_s=2
            )
        except TimeoutError:
            pytest.fail(f"no series under load for: {last}")
        assert load.accepted > 100

    # Every metric a query names is exported by something (counters at 0 count: they exist).
    names = set().union(*(_metric_names(expr) for _, expr in panels + signals))
    for name in sorted(names):
        if _skipped(name):
            continue
        pattern = f"{name}(_total|_bucket|_count|_sum)?"
        # Over the last minute: one scrape missed on a busy machine must not hide a metric.
        exported = plane.query(f'count(last_over_time({{__name__=~"{pattern}"}}[1m]))')
        assert exported, f"nothing exports {name}"

    # The skipped ones are still valid PromQL, and every rule is loaded and evaluates.
    for _, expr in panels + signals:
        plane.query(expr)
    groups = httpx.get(f"{plane.prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(rules) == {a.name for a in ALERTS}
    wait_until(
        lambda: all(r["health"] == "ok" for r in _rules(plane).values()),
        timeout_s=30,
        what="every alert rule evaluated without error",
    )
    # The dead letter was counted by each flow that reads the topic (each refuses the record
    # on its own, naming itself) and seen on the DLQ by the exporter.
    readers = [spec.name for spec in flow_specs() if "conversation.inbound" in spec.sources]
    dlq = TopicRegistry(plane.settings.topic_prefix).get("conversation.inbound.dlq").name
    depth = plane.query(f'soma_dead_letter_depth{{topic="{dlq}"}}')
    assert depth and float(depth[0]["value"][1]) == len(readers), readers


def _rules(plane: LivePlane) -> dict[str, dict[str, Any]]:
    groups = httpx.get(f"{plane.prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    return {r["name"]: r for g in groups for r in g["rules"]}
