"""Grafana dashboards as code (grafana-foundation-sdk); `soma plane dashboards` writes dashboards/.

Every query uses only names from soma/metrics.py (tests/unit/test_dashboards.py) and is run
against a live Prometheus scraping a loaded plane (tests/e2e/test_observability_live.py).
Each dashboard has a `datasource` variable, so it imports into any Grafana with a Prometheus.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DASHBOARDS_DIR = Path(__file__).resolve().parent.parent / "dashboards"

# The SLO the latency panels and alerts share: events processed within this many seconds.
LATENCY_SLO_SECONDS = "5.0"  # a bucket bound of soma_flow_event_latency_seconds
LATENCY_SLO_TARGET = 0.99


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    description: str = ""
    width: int = 12
    mappings: dict[int, str] = field(default_factory=dict)  # value -> text (states)


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Board:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]

    def queries(self) -> list[tuple[str, Query]]:
        """(panel title, query) for every query of the board."""
        return [(p.title, q) for r in self.rows for p in r.panels for q in p.queries]


def _q(expr: str, legend: str = "") -> tuple[Query, ...]:
    return (Query(expr, legend),)


_BY_PARTITION = "{{group}} {{topic}}[{{partition}}]"
_BY_TENANT = "{{group}} {{topic}} {{tenant}}"
_SLO_RATIO = (
    "sum by (flow, stage) (rate(soma_flow_event_latency_seconds_bucket"
    f'{{le="{LATENCY_SLO_SECONDS}"}}[10m])) / '
    "sum by (flow, stage) (rate(soma_flow_event_latency_seconds_count[10m]))"
)
_BREAKER = {0: "closed", 1: "half-open", 2: "open"}
_MODES = {0: "normal", 1: "degraded", 2: "down"}

STREAMS = Board(
    uid="soma-streams",
    title="SomaStream / Streams",
    description="Consumer lag (records and seconds) per group, topic, partition and tenant; "
    "throughput, latency and rebalances of the flows; bounded queues; bounded job progress.",
    rows=(
        Row(
            "Consumer lag",
            (
                Panel(
                    "Lag (records) by group / topic / partition",
                    _q(
                        "max by (group, topic, partition) (soma_consumer_group_lag_offsets)",
                        _BY_PARTITION,
                    ),
                    description="End offset minus committed offset, as kafka-consumer-groups.",
                ),
                Panel(
                    "Lag (seconds) by group / topic / partition",
                    _q(
                        "max by (group, topic, partition) (soma_consumer_group_lag_seconds)",
                        _BY_PARTITION,
                    ),
                    unit="s",
                    description="How long the oldest uncommitted record has waited.",
                ),
                Panel(
                    "Lag (records) by tenant",
                    _q(
                        "max by (group, topic, tenant) (soma_consumer_group_tenant_lag_offsets)",
                        _BY_TENANT,
                    ),
                    description="Exact when the uncommitted range fits the sample, else "
                    "estimated from it (docs/observability.md).",
                ),
                Panel(
                    "Lag (seconds) by tenant",
                    _q(
                        "max by (group, topic, tenant) (soma_consumer_group_tenant_lag_seconds)",
                        _BY_TENANT,
                    ),
                    unit="s",
                ),
                Panel(
                    "Total lag per group (records)",
                    _q("sum by (group) (soma_consumer_group_lag_offsets)", "{{group}}"),
                    kind="stat",
                    width=8,
                ),
                Panel(
                    "Lag exporter reaches the broker",
                    _q("min(soma_lag_exporter_up)", "up"),
                    kind="stat",
                    width=8,
                    mappings={0: "broker unreachable: values are stale", 1: "yes"},
                ),
                Panel(
                    "Age of the lag values",
                    _q("time() - max(soma_lag_exporter_last_success_timestamp_seconds)", "age"),
                    unit="s",
                    kind="stat",
                    width=8,
                ),
            ),
        ),
        Row(
            "Throughput",
            (
                Panel(
                    "Produced vs consumed (records/s) per topic",
                    (
                        Query(
                            "sum by (topic) (rate(soma_topic_end_offset[1m]))", "produced {{topic}}"
                        ),
                        Query(
                            "sum by (topic) (rate(soma_flow_events_in_total[1m]))",
                            "consumed {{topic}}",
                        ),
                    ),
                    unit="ops",
                    description="Produced: growth of the topic's end offsets, whoever "
                    "produced. Consumed: source records the flows took in.",
                ),
                Panel(
                    "Flow output (records/s)",
                    (
                        Query(
                            "sum by (flow, topic) (rate(soma_flow_events_out_total[1m]))",
                            "{{flow}} -> {{topic}}",
                        ),
                        Query(
                            "sum by (flow, table) (rate(soma_flow_table_writes_total[1m]))",
                            "{{flow}} table {{table}}",
                        ),
                    ),
                    unit="ops",
                ),
                Panel(
                    "End-to-end latency p50 / p99 (event time -> stage)",
                    (
                        Query(
                            "histogram_quantile(0.5, sum by (le, flow, stage) "
                            "(rate(soma_flow_event_latency_seconds_bucket[5m])))",
                            "p50 {{flow}} {{stage}}",
                        ),
                        Query(
                            "histogram_quantile(0.99, sum by (le, flow, stage) "
                            "(rate(soma_flow_event_latency_seconds_bucket[5m])))",
                            "p99 {{flow}} {{stage}}",
                        ),
                    ),
                    unit="s",
                ),
                Panel(
                    "Batch duration p99",
                    _q(
                        "histogram_quantile(0.99, sum by (le, flow) "
                        "(rate(soma_flow_batch_seconds_bucket[5m])))",
                        "{{flow}}",
                    ),
                    unit="s",
                ),
                Panel(
                    "Rebalances (per 5 min)",
                    _q("sum by (flow) (increase(soma_flow_rebalances_total[5m]))", "{{flow}}"),
                ),
                Panel(
                    "Source partitions owned",
                    _q("sum by (flow) (soma_flow_assigned_partitions)", "{{flow}}"),
                ),
            ),
        ),
        Row(
            "Bounded queues",
            (
                Panel(
                    "Queue high water / bound (1 = reached)",
                    _q(
                        "max by (queue) (soma_queue_high_water / soma_queue_capacity)",
                        "{{queue}}",
                    ),
                    unit="percentunit",
                    description="The most a bounded in-memory queue held since its process "
                    "started, as a share of its bound (docs/observability.md, Bounded queues).",
                ),
                Panel(
                    "Queue depth (items)",
                    _q("sum by (queue) (soma_queue_depth)", "{{queue}}"),
                ),
            ),
        ),
        Row(
            "Bounded jobs (Bytewax)",
            (
                Panel(
                    "Records left in the planned range",
                    _q("sum by (job, topic) (soma_job_lag_offsets)", "{{job}} {{topic}}"),
                ),
                Panel(
                    "Records read by the last run",
                    _q("max by (job, topic) (soma_job_records_read)", "{{job}} {{topic}}"),
                ),
            ),
        ),
    ),
)

HEALTH = Board(
    uid="soma-memory-health",
    title="SomaStream / Memory plane health",
    description="Dead letters, outbox, WAL and replication lag, the memory service's breaker, "
    "and the end-to-end latency SLO.",
    rows=(
        Row(
            "Latency SLO",
            (
                Panel(
                    f"Events within {LATENCY_SLO_SECONDS} s (SLO {LATENCY_SLO_TARGET:.0%})",
                    _q(_SLO_RATIO, "{{flow}} {{stage}}"),
                    unit="percentunit",
                    description="Share of events that reached the stage within the SLO, "
                    "over 10 minutes.",
                ),
                Panel(
                    "End-to-end latency p99 by stage",
                    _q(
                        "histogram_quantile(0.99, sum by (le, stage) "
                        "(rate(soma_flow_event_latency_seconds_bucket[5m])))",
                        "{{stage}}",
                    ),
                    unit="s",
                ),
            ),
        ),
        Row(
            "Dead letters",
            (
                Panel(
                    "Dead-letter depth (records held)",
                    _q("sum by (topic) (soma_dead_letter_depth)", "{{topic}}"),
                ),
                Panel(
                    "Dead-letter growth (per 10 min)",
                    _q("sum by (topic) (delta(soma_dead_letter_end_offset[10m]))", "{{topic}}"),
                ),
                Panel(
                    "Dead-lettered by flow and reason (records/s)",
                    _q(
                        "sum by (flow, reason) (rate(soma_flow_dead_letters_total[5m]))",
                        "{{flow}} {{reason}}",
                    ),
                    unit="ops",
                    width=24,
                ),
            ),
        ),
        Row(
            "Outbox",
            (
                Panel(
                    "Outbox backlog (writes)",
                    _q("sum(soma_outbox_pending)", "pending"),
                    description="Upstream thresholds: degraded above 50, down above 100.",
                    width=8,
                ),
                Panel(
                    "Oldest outbox write",
                    _q("max(soma_outbox_oldest_age_seconds)", "oldest"),
                    unit="s",
                    width=8,
                ),
                Panel(
                    "Outbox drain rate (writes/s)",
                    _q("sum by (outcome) (rate(soma_outbox_drained_total[1m]))", "{{outcome}}"),
                    unit="ops",
                    width=8,
                ),
            ),
        ),
        Row(
            "WAL and replication",
            (
                Panel(
                    "WAL lag (write-through consumer lag)",
                    _q(
                        'max by (group) (soma_consumer_group_lag_seconds{flow="write-through"})',
                        "{{group}}",
                    ),
                    unit="s",
                    description="Upstream thresholds: warn 10 s, critical 30 s.",
                ),
                Panel(
                    "Replication lag",
                    _q("max by (tenant) (soma_replication_lag_seconds)", "{{tenant}}"),
                    unit="s",
                    description="Age of the tenant's oldest WAL record not yet in the replica. "
                    "Every replication worker reports every partition: max, never sum.",
                ),
                Panel(
                    "WAL records not yet replicated",
                    _q("max by (tenant) (soma_replication_lag_offsets)", "{{tenant}}"),
                ),
                Panel(
                    "Records replicated/s",
                    _q(
                        "sum by (outcome) (rate(soma_replication_records_total[1m]))", "{{outcome}}"
                    ),
                    unit="ops",
                ),
            ),
        ),
        Row(
            "Memory service",
            (
                Panel(
                    "Breaker state",
                    _q("max by (backend) (soma_memory_backend_breaker_state)", "{{backend}}"),
                    kind="stat",
                    width=8,
                    mappings=_BREAKER,
                ),
                Panel(
                    "Backend health mode",
                    _q("max by (backend) (soma_memory_backend_mode)", "{{backend}}"),
                    kind="stat",
                    width=8,
                    mappings=_MODES,
                ),
                Panel(
                    "Backend calls by outcome (calls/s)",
                    _q(
                        "sum by (backend, outcome) (rate(soma_memory_backend_calls_total[5m]))",
                        "{{backend}} {{outcome}}",
                    ),
                    unit="ops",
                    width=8,
                ),
            ),
        ),
    ),
)

GATEWAY = Board(
    uid="soma-gateway",
    title="SomaStream / Gateway",
    description="Requests, latency, produce acknowledgements and failures, refusals, "
    "throttling and dependency health of the gateway.",
    rows=(
        Row(
            "Gateway",
            (
                Panel(
                    "Requests/s by route and status",
                    _q(
                        "sum by (route, status) (rate(soma_gateway_requests_total[1m]))",
                        "{{route}} {{status}}",
                    ),
                    unit="reqps",
                ),
                Panel(
                    "Request latency p50 / p99",
                    (
                        Query(
                            "histogram_quantile(0.5, sum by (le, route) "
                            "(rate(soma_gateway_request_seconds_bucket[5m])))",
                            "p50 {{route}}",
                        ),
                        Query(
                            "histogram_quantile(0.99, sum by (le, route) "
                            "(rate(soma_gateway_request_seconds_bucket[5m])))",
                            "p99 {{route}}",
                        ),
                    ),
                    unit="s",
                ),
                Panel(
                    "Records acknowledged/s by topic",
                    _q(
                        "sum by (topic) (rate(soma_gateway_produced_records_total[1m]))",
                        "{{topic}}",
                    ),
                    unit="ops",
                ),
                Panel(
                    "Produce failures/s by reason",
                    _q(
                        "sum by (reason) (rate(soma_gateway_produce_failures_total[1m]))",
                        "{{reason}}",
                    ),
                    unit="ops",
                ),
                Panel(
                    "Requests refused at the edge/s",
                    _q(
                        "sum by (reason) (rate(soma_gateway_rejected_requests_total[1m]))",
                        "{{reason}}",
                    ),
                    unit="reqps",
                ),
                Panel(
                    "Throttled requests/s (503 + Retry-After)",
                    _q(
                        "sum by (reason) (rate(soma_gateway_throttled_requests_total[1m]))",
                        "{{reason}}",
                    ),
                    unit="reqps",
                ),
                Panel(
                    "Error rate (5xx share of requests)",
                    _q(
                        '(sum(rate(soma_gateway_requests_total{status=~"5.."}[5m])) or vector(0))'
                        " / sum(rate(soma_gateway_requests_total[5m]))",
                        "5xx share",
                    ),
                    unit="percentunit",
                ),
                Panel(
                    "Dependency health (0 ok, 1 degraded, 2 down)",
                    _q("max by (component) (soma_gateway_component_health)", "{{component}}"),
                    mappings=_MODES,
                ),
            ),
        ),
    ),
)

BOARDS: tuple[Board, ...] = (STREAMS, HEALTH, GATEWAY)


def build(board: Board) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model."""
    from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import (
        DataSourceRef,
        ValueMap,
        ValueMappingResult,
    )

    source = DataSourceRef(type_val="prometheus", uid="${datasource}")
    builder = (
        dashboard.Dashboard(board.title)
        .uid(board.uid)
        .description(board.description)
        .tags(["somastream"])
        .refresh("10s")
        .time("now-1h", "now")
        .timezone("browser")
        .with_variable(
            dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus")
        )
    )
    panel_id = 0
    for row in board.rows:
        panel_id += 1
        builder = builder.with_row(dashboard.Row(row.title).id(panel_id))
        for spec in row.panels:
            panel_id += 1
            panel: Any = stat.Panel() if spec.kind == "stat" else timeseries.Panel()
            panel = (
                panel.id(panel_id)
                .title(spec.title)
                .datasource(source)
                .unit(spec.unit)
                .span(spec.width)
                .height(8)
            )
            if spec.description:
                panel = panel.description(spec.description)
            if spec.mappings:
                options = {
                    str(value): ValueMappingResult(text=text, index=index)
                    for index, (value, text) in enumerate(sorted(spec.mappings.items()))
                }
                panel = panel.mappings([ValueMap(options=options)])
            for ref, query in zip("ABCDEFGH", spec.queries, strict=False):
                target = prometheus.Dataquery().expr(query.expr).ref_id(ref)
                if query.legend:
                    target = target.legend_format(query.legend)
                panel = panel.with_target(target)
            builder = builder.with_panel(panel)
    model = json.loads(json.dumps(builder.build(), cls=JSONEncoder, sort_keys=True))
    assert isinstance(model, dict)
    return model


def render(board: Board) -> str:
    return json.dumps(build(board), indent=2, sort_keys=True) + "\n"


def write_all(directory: Path = DASHBOARDS_DIR) -> list[Path]:
    """Write every dashboard as `<directory>/<uid without soma->.json`."""
    written = []
    for board in BOARDS:
        path = directory / f"{board.uid.removeprefix('soma-')}.json"
        path.write_text(render(board))
        written.append(path)
    return written


def all_queries(boards: Sequence[Board] = BOARDS) -> list[tuple[str, str, Query]]:
    """(dashboard uid, panel title, query) of every panel query."""
    return [(b.uid, title, q) for b in boards for title, q in b.queries()]
