"""Every Prometheus metric of the plane, defined once: dashboards and alerts use exactly these."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Gateway request latency buckets: the produce path waits for a broker ack (ms), the health
# fan-out and a broker outage push requests towards the produce timeout (seconds).
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# --- gateway -------------------------------------------------------------------------------------

# counter: HTTP requests answered by the gateway, by route template (not raw path, to bound
# cardinality) and status code.
GATEWAY_REQUESTS = Counter(
    "soma_gateway_requests",
    "HTTP requests answered by the gateway",
    ["route", "method", "status"],
)

# histogram: seconds from request start to the end of the response, by route template.
GATEWAY_REQUEST_SECONDS = Histogram(
    "soma_gateway_request_seconds",
    "Gateway request duration in seconds",
    ["route", "method"],
    buckets=_REQUEST_BUCKETS,
)

# counter: records the broker acknowledged for gateway requests, by physical topic name.
GATEWAY_PRODUCED_RECORDS = Counter(
    "soma_gateway_produced_records",
    "Records produced by the gateway and acknowledged by the broker",
    ["topic"],
)

# counter: produce attempts that did not end in a broker ack, by topic and reason
# (broker_unavailable, queue_full, rejected, too_large).
GATEWAY_PRODUCE_FAILURES = Counter(
    "soma_gateway_produce_failures",
    "Gateway produce attempts that were not acknowledged",
    ["topic", "reason"],
)

# counter: requests refused at the edge before anything was produced, by reason
# (validation_failed, unauthorized, forbidden, payload_too_large, malformed_json, ...).
GATEWAY_REJECTED_REQUESTS = Counter(
    "soma_gateway_rejected_requests",
    "Requests refused by the gateway before producing",
    ["reason"],
)

# gauge: last health check result per component: 0 ok, 1 degraded, 2 down.
GATEWAY_COMPONENT_HEALTH = Gauge(
    "soma_gateway_component_health",
    "Health of a dependency as seen by /healthz (0 ok, 1 degraded, 2 down)",
    ["component"],
)

# histogram: seconds a health probe of one dependency took.
GATEWAY_HEALTH_CHECK_SECONDS = Histogram(
    "soma_gateway_health_check_seconds",
    "Duration of one dependency health probe in seconds",
    ["component"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)

# --- flows (every always-on flow exports the same names, labelled by flow) ----------------------

_BATCH_SIZES = (1, 5, 10, 25, 50, 100, 250, 500, 1000)
_BATCH_SECONDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# counter: source records a flow consumed (poison included), by flow and physical source topic.
FLOW_EVENTS_IN = Counter(
    "soma_flow_events_in", "Source records consumed by a flow", ["flow", "topic"]
)

# counter: records a flow produced to its output topics (acknowledged), by flow and topic.
FLOW_EVENTS_OUT = Counter(
    "soma_flow_events_out", "Records a flow produced to output topics", ["flow", "topic"]
)

# counter: records a flow dead-lettered, by flow, physical source topic and reason
# (processors/dead_letters.py DeadLetterReason).
FLOW_DEAD_LETTERS = Counter(
    "soma_flow_dead_letters", "Records dead-lettered by a flow", ["flow", "topic", "reason"]
)

# histogram: source records per processed batch.
FLOW_BATCH_SIZE = Histogram(
    "soma_flow_batch_size", "Source records per batch", ["flow"], buckets=_BATCH_SIZES
)

# histogram: seconds from a batch's hand-over by the stream to its commit steps being durable.
FLOW_BATCH_SECONDS = Histogram(
    "soma_flow_batch_seconds", "Seconds to process one batch", ["flow"], buckets=_BATCH_SECONDS
)

# counter: in-place retries after a transient failure, by flow and error class.
FLOW_RETRIES = Counter(
    "soma_flow_retries", "Transient failures retried in place", ["flow", "error"]
)

# counter: table values written (each one changelog record), by flow and table.
FLOW_TABLE_WRITES = Counter(
    "soma_flow_table_writes", "Table values written by a flow", ["flow", "table"]
)

# gauge: 1 while a flow is halted by its dead-letter limit (the worker then exits), else 0.
FLOW_HALTED = Gauge("soma_flow_halted", "1 when the dead-letter limit halted the flow", ["flow"])

# --- memory backends (state/memory/) -------------------------------------------------------------
# Label `backend` is `postgres` or `somabrain`; `operation` is remember, remember_batch, link,
# links, recall or probe.

# gauge: current health mode of a memory backend: 0 normal, 1 degraded, 2 down.
MEMORY_BACKEND_MODE = Gauge(
    "soma_memory_backend_mode",
    "Health mode of the memory backend (0 normal, 1 degraded, 2 down)",
    ["backend"],
)

# counter: health mode changes, by the mode left and the mode entered (one log line each).
MEMORY_BACKEND_MODE_CHANGES = Counter(
    "soma_memory_backend_mode_changes",
    "Health mode transitions of the memory backend",
    ["backend", "from_mode", "to_mode"],
)

# gauge: circuit breaker state of a memory backend: 0 closed, 1 half-open, 2 open.
MEMORY_BACKEND_BREAKER_STATE = Gauge(
    "soma_memory_backend_breaker_state",
    "Circuit breaker state of the memory backend (0 closed, 1 half-open, 2 open)",
    ["backend"],
)

# counter: circuit breaker transitions, by the state left and the state entered.
MEMORY_BACKEND_BREAKER_TRANSITIONS = Counter(
    "soma_memory_backend_breaker_transitions",
    "Circuit breaker transitions of the memory backend",
    ["backend", "from_state", "to_state"],
)

# counter: backend calls by outcome: ok, unavailable (transient, retry/outbox), rejected
# (invalid, dead-letter), unsupported (no such API, e.g. /link), short_circuited (refused by the
# open breaker without a call), error (cancelled or a bug).
MEMORY_BACKEND_CALLS = Counter(
    "soma_memory_backend_calls",
    "Memory backend calls by operation and outcome",
    ["backend", "operation", "outcome"],
)

# histogram: seconds one backend call attempt took (retries are separate attempts), probes too.
MEMORY_BACKEND_CALL_SECONDS = Histogram(
    "soma_memory_backend_call_seconds",
    "Duration of one memory backend call attempt in seconds",
    ["backend", "operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

# counter: retries of a backend call, by the reason of the failure that caused it (timeout,
# connect, server_error, rate_limited, service_breaker_open, ...).
MEMORY_BACKEND_RETRIES = Counter(
    "soma_memory_backend_retries",
    "Retries of memory backend calls by failure reason",
    ["backend", "operation", "reason"],
)

# gauge: 1 when links are kept in our Postgres link table because the service has no /link
# (SomaBrain answers 404), 0 when the service stores them itself.
MEMORY_BACKEND_LINKS_LOCAL = Gauge(
    "soma_memory_backend_links_local",
    "Whether memory links are kept locally because the backend has no link API (1 yes, 0 no)",
    ["backend"],
)

# --- replication (flows/replication.py; every worker of the flow reports every partition of
# memory.wal, so aggregate with max by (tenant), never sum) ------------------------------------

# gauge: seconds since the oldest WAL record of a tenant that is not yet in the replica was
# written (0 once the tenant is caught up); upstream health: degraded past 10 s, down past 30 s.
REPLICATION_LAG_SECONDS = Gauge(
    "soma_replication_lag_seconds",
    "Age in seconds of the oldest WAL record of the tenant not yet replicated (0: caught up)",
    ["tenant"],
)

# gauge: WAL records of a tenant not yet replicated (a lower bound while the probe's index of
# pending records is full; see soma_replication_lag_truncated).
REPLICATION_LAG_OFFSETS = Gauge(
    "soma_replication_lag_offsets",
    "WAL records of the tenant not yet replicated",
    ["tenant"],
)

# gauge: the same per memory.wal partition: high watermark minus the replicated position, and
# the age of the partition's oldest record not yet replicated.
REPLICATION_PARTITION_LAG_OFFSETS = Gauge(
    "soma_replication_partition_lag_offsets",
    "Offsets of a memory.wal partition not yet replicated",
    ["partition"],
)
REPLICATION_PARTITION_LAG_SECONDS = Gauge(
    "soma_replication_partition_lag_seconds",
    "Age in seconds of the oldest record of a memory.wal partition not yet replicated",
    ["partition"],
)

# gauge: 1 while more records are pending than the lag probe indexes (offsets are then a lower
# bound; seconds stay exact because the oldest records are the ones indexed).
REPLICATION_LAG_TRUNCATED = Gauge(
    "soma_replication_lag_truncated",
    "1 when per-tenant replication lag offsets are a lower bound",
)

# gauge: unix time (seconds) of the WAL record time of the last record replicated per tenant;
# time() minus it is the lag as "age of the last replicated record".
REPLICATION_LAST_REPLICATED = Gauge(
    "soma_replication_last_replicated_timestamp_seconds",
    "WAL record time (unix seconds) of the tenant's last replicated record",
    ["tenant"],
)

# counter: WAL records written to the replica, by outcome: stored (new there), present (the
# replica had the key already: a replay or redelivery). Refused ones are dead letters
# (soma_flow_dead_letters{flow="replication"}).
REPLICATION_RECORDS = Counter(
    "soma_replication_records",
    "WAL records the replication flow handled, by outcome",
    ["outcome"],
)
