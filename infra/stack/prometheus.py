"""Prometheus in the stack: Debian's server scraping the plane, its config generated from the specs.

The config comes from `soma.plane.prometheus_config` (gateway, lag exporter, every flow
worker) with the alert rules of infra/prometheus/alerts.yml loaded; `soma up` rewrites it and
reloads the server when the plane's processes changed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import httpx

from infra.stack.apt import require_binary
from infra.stack.errors import StackError
from infra.stack.ports import Address
from infra.stack.process import live_pid, spawn_detached, tail, terminate, wait_until
from infra.stack.service import ServiceStatus, classify, refuse_foreign
from soma.settings import Settings

log = logging.getLogger(__name__)

RULES = Path(__file__).resolve().parent.parent / "prometheus" / "alerts.yml"
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 30.0  # SIGTERM makes Prometheus close its head block cleanly
RETENTION = "7d"
_INSTALL_HINT = "`apt-get install -y prometheus` (or run `soma stack up` as root)"


@dataclass(frozen=True)
class PrometheusPaths:
    home: Path
    data: Path
    config: Path
    pidfile: Path
    log: Path

    @classmethod
    def of(cls, settings: Settings) -> PrometheusPaths:
        home = settings.stack_dir / "prometheus"
        return cls(
            home=home,
            data=home / "data",
            config=home / "prometheus.yml",
            pidfile=home / "prometheus.pid",
            log=settings.stack_dir / "logs" / "prometheus.log",
        )


def prometheus_address(settings: Settings) -> Address:
    return Address("127.0.0.1", settings.prometheus_port)


def prometheus_url(settings: Settings) -> str:
    return f"http://{prometheus_address(settings)}"


def prometheus_pid(settings: Settings) -> int | None:
    paths = PrometheusPaths.of(settings)
    # Our config path on the command line tells our server from the distribution's own.
    return live_pid(paths.pidfile, str(paths.config))


def render_config(settings: Settings, interval_s: int = 5) -> str:
    from soma.plane import prometheus_config

    return prometheus_config(settings, rule_files=(str(RULES),), interval_s=interval_s)


def write_config(settings: Settings, interval_s: int = 5) -> bool:
    """Write the generated config; True when it changed."""
    paths = PrometheusPaths.of(settings)
    paths.home.mkdir(parents=True, exist_ok=True)
    text = render_config(settings, interval_s)
    if paths.config.is_file() and paths.config.read_text() == text:
        return False
    paths.config.write_text(text)
    return True


def start_prometheus(settings: Settings, interval_s: int = 5) -> int:
    """Start our Prometheus unless it runs (then: refresh its config); return once it is ready."""
    paths = PrometheusPaths.of(settings)
    pid = prometheus_pid(settings)
    if pid is not None:
        reload_prometheus(settings, interval_s)
        return pid
    address = prometheus_address(settings)
    refuse_foreign("prometheus", address, "SOMA_PROMETHEUS_PORT")
    binary = require_binary("prometheus", _INSTALL_HINT)
    write_config(settings, interval_s)
    paths.data.mkdir(parents=True, exist_ok=True)
    argv = [
        binary,
        f"--config.file={paths.config}",
        f"--storage.tsdb.path={paths.data}",
        f"--storage.tsdb.retention.time={RETENTION}",
        f"--web.listen-address={address}",
        "--web.enable-lifecycle",  # POST /-/reload after `soma up` rewrote the config
        "--log.level=warn",
    ]
    pid = spawn_detached(argv, paths.log, cwd=paths.home)
    paths.pidfile.write_text(f"{pid}\n")
    if not wait_until(
        lambda: _ready(settings) or prometheus_pid(settings) is None, READY_TIMEOUT_S
    ):
        raise StackError(f"prometheus: not ready on {address}; log:\n{tail(paths.log)}")
    if prometheus_pid(settings) is None:
        raise StackError(f"prometheus: pid {pid} exited while starting; log:\n{tail(paths.log)}")
    log.info("prometheus: started pid %d on %s", pid, address)
    return pid


def reload_prometheus(settings: Settings, interval_s: int = 5) -> bool:
    """Rewrite the config and, when it changed and our server runs, reload it; True if reloaded."""
    changed = write_config(settings, interval_s)
    if not changed or prometheus_pid(settings) is None:
        return False
    response = httpx.post(f"{prometheus_url(settings)}/-/reload", timeout=10.0)
    if response.status_code != 200:
        raise StackError(f"prometheus: reload refused the new config: {response.text.strip()}")
    return True


def stop_prometheus(settings: Settings) -> bool:
    """Stop our Prometheus; False when it was not running."""
    paths = PrometheusPaths.of(settings)
    pid = prometheus_pid(settings)
    if pid is None:
        paths.pidfile.unlink(missing_ok=True)
        return False
    terminate(pid, STOP_GRACE_S)
    paths.pidfile.unlink(missing_ok=True)
    log.info("prometheus: stopped pid %d", pid)
    return True


def targets_up(settings: Settings) -> tuple[int, int] | None:
    """(targets up, targets) as Prometheus last scraped them; None when it does not answer."""
    try:
        body = httpx.get(f"{prometheus_url(settings)}/api/v1/targets", timeout=2.0).json()
    except (httpx.HTTPError, ValueError):
        return None
    active = body.get("data", {}).get("activeTargets", [])
    return sum(1 for t in active if t.get("health") == "up"), len(active)


def prometheus_status(settings: Settings) -> ServiceStatus:
    address = prometheus_address(settings)
    state, pid = classify(prometheus_pid(settings), address)
    detail = f"url={prometheus_url(settings)}"
    if state == "running":
        counts = targets_up(settings)
        detail += " targets=?" if counts is None else f" targets_up={counts[0]}/{counts[1]}"
    return ServiceStatus(
        "prometheus", state, pid, address, PrometheusPaths.of(settings).data, detail
    )


def _ready(settings: Settings) -> bool:
    try:
        return httpx.get(f"{prometheus_url(settings)}/-/ready", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False
