"""Load through the whole plane with the memory backend forced down for part of the run.

The plane runs under `soma up` (gateway, every flow, supervised), its Postgres memory backend
reached through a TCP gate the test closes (connections refused: the breaker opens, writes park
in the outbox) and opens again. 20 tenants write memories through the gateway with their own
idempotency keys; 4 heavy tenants pass the outbox limit while the backend is down. At the end:
every write is stored exactly once (distinct keys = events), the WAL holds one record per key,
the outbox is empty, nothing is dead-lettered, no process's queue passed its bound, and 429s
were counted for the heavy tenants only. The second test also kills the write-through and
outbox-drain workers with kill -9 at random moments (the supervisor restarts them).

Size: SOMA_LOAD_EVENTS (default 4,000, CI size); `make load` runs the issue's 50,000.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from gateway.auth import PLATFORM_ADMIN_ROLE, issue_token
from soma.plane import plane_processes
from soma.settings import Settings
from soma.supervise import Supervisor
from tests.conftest import TEST_JWT_KEYS
from tests.support.processes import free_port, free_worker_base, wait_until
from tests.support.tcp_gate import TcpGate
from tests.support.write_through import duplicates, stored_count, topic_values
from topics.admin import apply_topics, delete_topics
from topics.registry import TopicRegistry

pytestmark = [
    pytest.mark.load,
    pytest.mark.fault,
    pytest.mark.integration,
    pytest.mark.timeout(int(os.environ.get("SOMA_LOAD_TIMEOUT_S", "1500"))),
]

REPO = Path(__file__).resolve().parents[2]
EVENTS = int(os.environ.get("SOMA_LOAD_EVENTS", "4000"))
TENANTS, HEAVY = 20, 4
# While down, heavy tenants write 0.6 * 0.6 * EVENTS / 4 (= EVENTS / 11) each, light ones
# 0.6 * 0.4 * EVENTS / 16 (= EVENTS / 67): only heavy ones pass the limit.
LIMIT = max(40, EVENTS // 50)
PACE_S = 2.0  # between batches while down: the backlog passes the limit while they still write
BATCH = 25


@dataclass
class Plane:
    settings: Settings
    env: dict[str, str]
    gate: TcpGate
    db: Settings  # the real Postgres, not through the gate: what the test reads

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.settings.gateway_port}"

    def soma(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "soma.cli", *args],
            cwd=REPO, env=self.env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def pid(self, process: str) -> int | None:
        for line in self.soma("status").splitlines()[1:]:
            parts = line.split()
            if parts and parts[0] == process and parts[1] == "running" and parts[2].isdigit():
                return int(parts[2])
        return None

    def metrics(self) -> dict[str, str]:
        """Every plane process's /metrics text, by process name (those that answer)."""
        found = {}
        for process in plane_processes(self.settings):
            try:
                found[process.name] = httpx.get(process.metrics_url, timeout=5).text
            except httpx.HTTPError:
                continue
        return found


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[Plane]:
    prefix = f"ld{uuid.uuid4().hex[:8]}."
    base = Settings()
    pg_host, pg_port = base.postgres_dsn.rsplit("@", 1)[1].split("/", 1)[0].split(":")
    gate = TcpGate((pg_host, int(pg_port)))
    gate.open()
    dsn = base.postgres_dsn.replace(f"@{pg_host}:{pg_port}/", f"@127.0.0.1:{gate.port}/")
    values = {
        "topic_prefix": prefix,
        "stack_dir": tmp_path / "stack",
        "gateway_port": free_port(),
        "worker_base_port": free_worker_base(),
        "postgres_dsn": dsn,
        "outbox_tenant_limit": LIMIT,
        "outbox_poll_interval_s": 0.5,
        "jwt_active_kid": "k2",
    }
    env = {
        **os.environ,
        **{f"SOMA_{k.upper()}": str(v) for k, v in values.items()},
        "SOMA_JWT_KEYS": json.dumps(TEST_JWT_KEYS),
    }
    settings = Settings(**values, jwt_keys=TEST_JWT_KEYS)  # type: ignore[arg-type]
    topics = list(TopicRegistry(prefix))
    apply_topics(settings, topics)
    plane = Plane(settings, env, gate, base)
    try:
        plane.soma("up")
        yield plane
    finally:
        Supervisor(settings).down()
        gate.close()
        delete_topics(settings, [t.name for t in topics])


@dataclass
class Tenant:
    name: str
    heavy: bool
    phases: tuple[list[dict[str, object]], ...]  # before, while down, after
    throttled: int = 0
    done: list[threading.Event] = field(
        default_factory=lambda: [threading.Event() for _ in range(3)]
    )


def tenants() -> list[Tenant]:
    run = uuid.uuid4().hex[:6]
    heavy_share, light_share = 0.6 * EVENTS / HEAVY, 0.4 * EVENTS / (TENANTS - HEAVY)
    found = []
    for t in range(TENANTS):
        heavy = t < HEAVY
        count = round(heavy_share if heavy else light_share)
        if t == TENANTS - 1:  # the rounding remainder, so the total is exactly EVENTS
            count = EVENTS - sum(sum(len(p) for p in x.phases) for x in found)
        name = f"{'h' if heavy else 'l'}{t:02d}{run}"
        writes = [
            {"session_id": f"s{i % 7}", "idempotency_key": f"ld-{name}-{i:06d}",
             "payload": {"fact": f"load fact {i} of {name}"}}
            for i in range(count)
        ]  # fmt: skip
        first, second = count // 5, count * 4 // 5  # 20 % before, 60 % while down, 20 % after
        found.append(Tenant(name, heavy, (writes[:first], writes[first:second], writes[second:])))
    return found


class Writers:
    """One thread per tenant: each phase's writes in batches; a 429 or 503 retries the batch."""

    def __init__(self, plane: Plane, all_tenants: list[Tenant]) -> None:
        self.plane, self.tenants = plane, all_tenants
        self.go = [threading.Event() for _ in range(3)]
        self.errors: list[str] = []
        self.threads = [
            threading.Thread(target=self._run, args=(t,), daemon=True) for t in all_tenants
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self.threads), "writers did not finish"
        assert not self.errors, self.errors[:5]

    def _run(self, tenant: Tenant) -> None:
        token = issue_token(self.plane.settings, tenant.name)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=self.plane.gateway, timeout=30, headers=headers) as client:
            for phase, writes in enumerate(tenant.phases):
                self.go[phase].wait()
                for start in range(0, len(writes), BATCH):
                    self._send(client, tenant, writes[start : start + BATCH])
                    if phase == 1 and not self.go[2].is_set():
                        time.sleep(PACE_S)
                tenant.done[phase].set()

    def _send(self, client: httpx.Client, tenant: Tenant, items: list[dict[str, object]]) -> None:
        while True:
            try:
                answer = client.post("/v1/memory/batch", json={"items": items})
            except httpx.HTTPError:
                time.sleep(0.5)  # the same keys again: idempotent
                continue
            if answer.status_code == 202:
                return
            if answer.status_code in (429, 503):
                tenant.throttled += answer.status_code == 429
                time.sleep(min(float(answer.headers.get("Retry-After", "1")), 1.0))
                continue
            self.errors.append(f"{tenant.name}: {answer.status_code} {answer.text[:200]}")
            return


def _sample(text: str, name: str, **labels: str) -> float | None:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(rf"^{name}\{{{re.escape(wanted)}\}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else None


class Killer(threading.Thread):
    """kill -9 each of `processes` `times` times at random moments; supervisord restarts them."""

    def __init__(self, plane: Plane, processes: list[str], times: int) -> None:
        super().__init__(daemon=True)
        self.plane, self.processes, self.times = plane, processes, times
        self.kills: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        rand = random.Random()
        for _ in range(self.times):
            for name in self.processes:
                if self.stop.wait(rand.uniform(1.0, 5.0)):
                    return
                pid = self.plane.pid(name)
                if pid is not None:
                    os.kill(pid, 9)
                    self.kills.append(name)


def run_load(plane: Plane, killer: Killer | None) -> list[Tenant]:
    settings = plane.settings
    everyone = tenants()
    names = [t.name for t in everyone]
    writers = Writers(plane, everyone)
    writers.start()
    before = sum(len(t.phases[0]) for t in everyone)

    # 1. The backend is up: the first part is stored directly.
    writers.go[0].set()
    wait_until(lambda: all(t.done[0].is_set() for t in everyone), 300, "the first part sent")
    wait_until(lambda: stored_count(plane.db, names) >= before, 300, "the first part stored")

    # 2. Down: connections to Postgres refused. Heavy tenants pass the limit and get 429.
    plane.gate.close()
    writers.go[1].set()

    def down_phase() -> bool:
        light = [t for t in everyone if not t.heavy and not t.done[1].is_set()]
        return not light and all(t.throttled > 0 for t in everyone if t.heavy)

    try:
        wait_until(down_phase, 300, "light tenants' writes accepted, heavy ones throttled")
    except TimeoutError:
        light = [(t.name, t.throttled) for t in everyone if not t.heavy and not t.done[1].is_set()]
        heavy = [t.name for t in everyone if t.heavy and t.throttled == 0]
        outbox = httpx.get(f"{plane.gateway}/v1/outbox", headers=_admin(settings), timeout=10)
        raise AssertionError(
            f"light tenants unfinished {light}, heavy never throttled {heavy}, "
            f"outbox {outbox.status_code} {outbox.text[:3000]}, status {plane.soma('status')}"
        ) from None

    # Kills start once throttling was seen: while a killed drain restarts the gateway cannot
    # read the backlog and does not throttle (it fails open), which would hide the 429s.
    if killer is not None:
        killer.start()
        wait_until(lambda: killer.kills, 30, "a first kill while the backend is down")

    # 3. Back up: everything drains; the last part goes through.
    plane.gate.open()
    writers.go[2].set()
    writers.join(600)
    if killer is not None:
        killer.stop.set()
        killer.join(60)
    wait_until(
        lambda: stored_count(plane.db, names) >= EVENTS, 600, "every write stored", interval_s=2
    )
    admin = _admin(settings)

    def outbox_empty() -> bool:
        answer = httpx.get(f"{plane.gateway}/v1/outbox", headers=admin, timeout=10)
        return answer.status_code == 200 and answer.json()["tenants"] == []

    wait_until(outbox_empty, 300, "the outbox drained", interval_s=1)
    wait_until(lambda: len(topic_values(settings, "memory.wal")) >= EVENTS, 300, "every WAL record")
    return everyone


def _admin(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(settings, 'ops', roles=[PLATFORM_ADMIN_ROLE])}"}


def assert_end_state(plane: Plane, everyone: list[Tenant]) -> None:
    settings = plane.settings
    names = [t.name for t in everyone]
    assert stored_count(plane.db, names) == EVENTS, "distinct keys stored = events, nothing more"
    wal = topic_values(settings, "memory.wal")
    assert not duplicates(wal, "idempotency_key"), "one WAL record per write"
    sent = {str(w["idempotency_key"]) for t in everyone for p in t.phases for w in p}
    assert len(sent) == EVENTS and {r["idempotency_key"] for r in wal} == sent
    for dlq in ("memory.requests.dlq", "memory.outbox.dlq"):
        assert topic_values(settings, dlq) == [], f"nothing dead-lettered in {dlq}"

    metrics = plane.metrics()
    gateway = metrics["gateway"]
    for tenant in everyone:
        counted = _sample(gateway, "soma_gateway_tenant_throttled_total", tenant=tenant.name) or 0
        if tenant.heavy:
            assert counted >= tenant.throttled > 0, tenant.name
        else:
            assert counted == 0 and tenant.throttled == 0, f"{tenant.name} was throttled"
    bounded = 0
    for process, text in metrics.items():
        for queue, high in re.findall(
            r'^soma_queue_high_water\{queue="([^"]+)"\} (\S+)$', text, re.M
        ):
            capacity = _sample(text, "soma_queue_capacity", queue=queue)
            assert capacity is not None, f"{process}: {queue} has no capacity"
            assert float(high) <= capacity, f"{process}: {queue} high water {high} > {capacity}"
            bounded += 1
    assert bounded >= 3, "the gateway's and the memory workers' queues report a high water"


def test_memory_writes_survive_a_backend_outage_under_load(plane: Plane) -> None:
    everyone = run_load(plane, killer=None)
    assert_end_state(plane, everyone)


def test_the_same_with_memory_workers_killed_at_random(plane: Plane) -> None:
    killer = Killer(plane, ["flow-write-through-1", "flow-outbox-drain-1"], times=3)
    everyone = run_load(plane, killer)
    assert len(killer.kills) >= 4, killer.kills
    assert_end_state(plane, everyone)
