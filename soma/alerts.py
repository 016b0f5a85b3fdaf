"""The plane's alert rules, written once as conditions: `soma plane alert-rules` renders the YAML.

infra/prometheus/alerts.yml is generated from ALERTS (a unit test compares), unit-tested by
`promtool test rules` (infra/prometheus/alerts_test.yml, `make rules`), and every condition's
signal is queried on a live, loaded plane (tests/e2e/test_observability_live.py). A signal is
the measured value per series; the alert fires where every condition holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from soma.dashboards import LATENCY_SLO_SECONDS, LATENCY_SLO_TARGET

# Upstream health thresholds (SomaBrain / SomaAgent01): WAL lag warn 10 s, critical 30 s;
# outbox pending degraded above 50, down above 100.
WAL_LAG_WARN_S, WAL_LAG_CRITICAL_S = 10, 30
OUTBOX_WARN, OUTBOX_CRITICAL = 50, 100
RUNBOOK = "docs/observability.md#alerts"


@dataclass(frozen=True)
class Condition:
    signal: str  # PromQL: one series per thing measured
    op: str  # a PromQL comparison
    threshold: float

    def expr(self) -> str:
        return f"{self.signal} {self.op} {self.threshold:g}"


@dataclass(frozen=True)
class Alert:
    name: str
    conditions: tuple[Condition, ...]
    for_: str
    severity: str  # warning | critical
    summary: str  # may use {{ $labels.x }} and {{ $value }}
    description: str

    def expr(self) -> str:
        if len(self.conditions) == 1:
            return self.conditions[0].expr()
        return " and ".join(f"({c.expr()})" for c in self.conditions)


def _c(signal: str, op: str, threshold: float) -> tuple[Condition, ...]:
    return (Condition(signal, op, threshold),)


_SLO = (
    "sum by (flow, stage) (rate(soma_flow_event_latency_seconds_bucket"
    f'{{le="{LATENCY_SLO_SECONDS}"}}[10m])) / '
    "sum by (flow, stage) (rate(soma_flow_event_latency_seconds_count[10m]))"
)

ALERTS: tuple[Alert, ...] = (
    Alert(
        "SomaLatencySLOBreached",
        _c(_SLO, "<", LATENCY_SLO_TARGET),
        "5m",
        "warning",
        "{{ $labels.flow }}: fewer than 99% of events reach {{ $labels.stage }} within "
        f"{LATENCY_SLO_SECONDS} s",
        "Event time to the stage, over 10 minutes. Look at the flow's lag and batch duration.",
    ),
    Alert(
        "SomaGatewayErrorRate",
        _c(
            '(sum(rate(soma_gateway_requests_total{status=~"5.."}[5m])) or vector(0))'
            " / sum(rate(soma_gateway_requests_total[5m]))",
            ">",
            0.05,
        ),
        "5m",
        "critical",
        "More than 5% of gateway requests fail with 5xx",
        "503s mean the broker or a flow's state is unavailable; see soma_gateway_throttled_"
        "requests_total and the gateway's log.",
    ),
    Alert(
        "SomaOutboxBacklogHigh",
        _c("sum(soma_outbox_pending)", ">", OUTBOX_WARN),
        "5m",
        "warning",
        "Outbox holds more than 50 writes (memory service degraded)",
        "Writes wait for the memory service; check its breaker and health mode.",
    ),
    Alert(
        "SomaOutboxBacklogCritical",
        _c("sum(soma_outbox_pending)", ">", OUTBOX_CRITICAL),
        "5m",
        "critical",
        "Outbox holds more than 100 writes (memory service down)",
        "Writes wait for the memory service; check its breaker and health mode.",
    ),
    Alert(
        "SomaWALLagWarning",
        _c(
            'max by (group) (soma_consumer_group_lag_seconds{flow="write-through"})',
            ">",
            WAL_LAG_WARN_S,
        ),
        "1m",
        "warning",
        "WAL lag above 10 s: events wait to become memory.wal records",
        "How long the oldest event the write-through flow has not committed has waited.",
    ),
    Alert(
        "SomaWALLagCritical",
        _c(
            'max by (group) (soma_consumer_group_lag_seconds{flow="write-through"})',
            ">",
            WAL_LAG_CRITICAL_S,
        ),
        "1m",
        "critical",
        "WAL lag above 30 s: events wait to become memory.wal records",
        "How long the oldest event the write-through flow has not committed has waited.",
    ),
    Alert(
        "SomaReplicationLag",
        _c("max(soma_replication_lag_seconds)", ">", 30),
        "5m",
        "warning",
        "The replica is more than 30 s behind memory.wal",
        "The wal-replication flow applies WAL records late; check its lag and the replica.",
    ),
    Alert(
        "SomaDeadLetterGrowth",
        _c("sum by (topic) (delta(soma_dead_letter_end_offset[10m]))", ">", 0),
        "0m",
        "warning",
        "{{ $labels.topic }} received dead letters in the last 10 minutes",
        "Inspect the dead letters (error class, stack, source offset), fix the cause, replay.",
    ),
    Alert(
        "SomaBreakerOpen",
        _c("max by (backend) (soma_memory_backend_breaker_state)", "==", 2),
        "1m",
        "warning",
        "The {{ $labels.backend }} memory backend's circuit breaker is open",
        "Calls are refused without trying; writes go to the outbox until it closes.",
    ),
    Alert(
        "SomaConsumerStalled",
        (
            Condition("soma_consumer_group_lag_offsets", ">", 0),
            Condition("delta(soma_consumer_group_lag_offsets[5m])", ">", 0),
            Condition("changes(soma_consumer_group_committed_offset[5m])", "==", 0),
        ),
        "2m",
        "critical",
        "{{ $labels.group }} stalled on {{ $labels.topic }}[{{ $labels.partition }}]",
        "Lag grows while the committed offset stands still: check `soma status` and the "
        "worker's log (halted, crash-looping, stuck in a rebalance).",
    ),
    Alert(
        "SomaConsumerLagHigh",
        _c("max by (group, topic) (soma_consumer_group_lag_seconds)", ">", 60),
        "5m",
        "warning",
        "{{ $labels.group }} is more than a minute behind on {{ $labels.topic }}",
        "The oldest uncommitted record has waited over 60 s; the flow cannot keep up.",
    ),
    Alert(
        "SomaLagExporterBlind",
        _c("min by (bootstrap) (soma_lag_exporter_up)", "==", 0),
        "2m",
        "warning",
        "The lag exporter cannot reach the broker: lag values are stale",
        "Lag series keep their last values; soma_lag_exporter_last_success_timestamp_seconds "
        "says since when.",
    ),
    Alert(
        "SomaTargetDown",
        _c('up{job=~"soma-.*"}', "==", 0),
        "1m",
        "critical",
        "{{ $labels.job }} ({{ $labels.instance }}) does not answer scrapes",
        "The process is down or hung; `soma status` shows its state and restarts.",
    ),
)


def _quote(text: str) -> str:
    # YAML single-quoted scalar: only the quote itself needs escaping.
    return "'" + text.replace("'", "''") + "'"


def render_rules(alerts: tuple[Alert, ...] = ALERTS) -> str:
    """The Prometheus rule file (YAML) of `alerts`."""
    lines = [
        "# Generated from soma/alerts.py by `soma plane alert-rules`: edit that, not this.",
        "groups:",
        "  - name: somastream",
        "    rules:",
    ]
    for alert in alerts:
        lines += [
            f"      - alert: {alert.name}",
            f"        expr: {_quote(alert.expr())}",
            f"        for: {alert.for_}",
            "        labels:",
            f"          severity: {alert.severity}",
            "        annotations:",
            f"          summary: {_quote(alert.summary)}",
            f"          description: {_quote(alert.description)}",
            f"          runbook: {RUNBOOK}",
        ]
    return "\n".join(lines) + "\n"
