"""The plane's long-lived processes, derived from the flow specs: names, commands, ports, targets.

Ports are deterministic so the scrape targets and the gateway can name every worker: flow
number `i` (in name order) owns ports `worker_base_port + 10*i ...+9`, one per worker; the lag
exporter listens on `worker_base_port - 1` unless SOMA_LAG_EXPORTER_PORT says otherwise.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from soma.settings import Settings

PORTS_PER_FLOW = 10


@dataclass(frozen=True)
class PlaneProcess:
    """One process the plane runs under the supervisor."""

    name: str  # supervisor program name: `gateway`, `flow-<flow>-<n>`
    args: tuple[str, ...]
    ready_url: str  # answers < 500 once the process serves
    metrics_url: str  # Prometheus scrape target (http://host:port/metrics)
    job: str  # Prometheus job of its scrape target
    flow: str | None = None
    app_id: str | None = None  # the consumer group of a flow worker
    port: int | None = None


def flow_workers(settings: Settings, flow: str, default: int) -> int:
    """How many workers of `flow` the plane runs (SOMA_FLOW_WORKERS overrides the spec)."""
    count = settings.flow_workers.get(flow, default)
    if not 1 <= count <= PORTS_PER_FLOW:
        raise ValueError(f"{flow}: between 1 and {PORTS_PER_FLOW} workers, got {count}")
    return count


def plane_processes(settings: Settings) -> list[PlaneProcess]:
    """Everything `make up` runs after the stack: the gateway, the lag exporter, every flow's
    workers."""
    from flows.catalog import flow_specs  # specs only: cheap, no Faust

    python = sys.executable
    gateway = f"http://{settings.gateway_host}:{settings.gateway_port}"
    exporter_port = settings.exporter_port()
    exporter = f"http://{settings.worker_host}:{exporter_port}"
    processes = [
        PlaneProcess(
            "gateway",
            (python, "-m", "soma.cli", "gateway", "serve"),
            ready_url=f"{gateway}/docs",
            metrics_url=f"{gateway}/metrics",
            job="soma-gateway",
        ),
        PlaneProcess(
            "lag-exporter",
            (python, "-m", "soma.cli", "lag-exporter", "--port", str(exporter_port)),
            ready_url=f"{exporter}/healthz",
            metrics_url=f"{exporter}/metrics",
            job="soma-lag-exporter",
            port=exporter_port,
        ),
    ]
    for index, spec in enumerate(flow_specs()):
        for worker in range(flow_workers(settings, spec.name, spec.workers)):
            port = settings.worker_base_port + PORTS_PER_FLOW * index + worker
            base = f"http://{settings.worker_host}:{port}"
            processes.append(
                PlaneProcess(
                    f"flow-{spec.name}-{worker + 1}",
                    (python, "-m", "soma.cli", "flow", "run", spec.name, "--port", str(port)),
                    ready_url=f"{base}/ready",
                    metrics_url=f"{base}/metrics",
                    job=f"soma-flow-{spec.name}",
                    flow=spec.name,
                    app_id=f"{settings.topic_prefix}{spec.app_id}",
                    port=port,
                )
            )
    return processes


def scrape_targets(settings: Settings) -> dict[str, list[str]]:
    """Prometheus job -> `host:port` targets: the gateway, the lag exporter, each flow's workers."""
    targets: dict[str, list[str]] = {}
    for process in plane_processes(settings):
        host_port = process.metrics_url.split("//", 1)[1].split("/", 1)[0]
        targets.setdefault(process.job, []).append(host_port)
    return targets


def prometheus_config(
    settings: Settings, *, rule_files: tuple[str, ...] = (), interval_s: int = 5
) -> str:
    """A Prometheus configuration (YAML) scraping every plane process."""
    lines = [
        "# Generated from the flow specs by `soma plane prometheus-config`: edit the specs.",
        "global:",
        f"  scrape_interval: {interval_s}s",
        f"  scrape_timeout: {interval_s}s",  # the default 10 s may not exceed the interval
        f"  evaluation_interval: {interval_s}s",
    ]
    if rule_files:
        lines.append("rule_files:")
        lines += [f"  - {path}" for path in rule_files]
    lines.append("scrape_configs:")
    for job, targets in scrape_targets(settings).items():
        lines += [
            f"  - job_name: {job}",
            "    static_configs:",
            "      - targets: [" + ", ".join(f'"{t}"' for t in targets) + "]",
        ]
    return "\n".join(lines) + "\n"
