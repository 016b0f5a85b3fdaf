"""Every Prometheus metric of the plane, defined once: dashboards and alerts use exactly these."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
# (PRODUCE_FAILURE_REASONS). Created at 0 for every topic the gateway produces to when it
# starts, so a healthy gateway shows 0 failures rather than no data.
GATEWAY_PRODUCE_FAILURES = Counter(
    "soma_gateway_produce_failures",
    "Gateway produce attempts that were not acknowledged",
    ["topic", "reason"],
)

PRODUCE_FAILURE_REASONS = ("ack_timeout", "queue_full", "broker_unavailable", "rejected")

# counter: requests refused at the edge before anything was produced, by reason
# (validation_failed, unauthorized, forbidden, payload_too_large, malformed_json, ...).
GATEWAY_REJECTED_REQUESTS = Counter(
    "soma_gateway_rejected_requests",
    "Requests refused by the gateway before producing",
    ["reason"],
)

# counter: requests answered 503 with Retry-After (the client is asked to back off), by reason:
# broker_unavailable (incl. the producer queue being full), state_unavailable. Every reason
# is created at 0 when the gateway starts, so a quiet gateway shows 0, not "no data".
GATEWAY_THROTTLED_REQUESTS = Counter(
    "soma_gateway_throttled_requests",
    "Requests answered with 503 and Retry-After",
    ["reason"],
)
THROTTLE_REASONS = ("broker_unavailable", "state_unavailable")

# counter: memory writes answered 429 because the tenant's outbox backlog passed
# SOMA_OUTBOX_TENANT_LIMIT, by tenant (gateway/backpressure.py).
GATEWAY_TENANT_THROTTLED = Counter(
    "soma_gateway_tenant_throttled",
    "Memory writes answered 429 for a tenant's outbox backlog",
    ["tenant"],
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

# --- bounded queues (gateway and flow workers; docs/observability.md, "Bounded queues") ---------
# `queue` names one in-memory queue of the process: gateway_producer, gateway_requests,
# flow_producer, flow_stream_buffer, flow_batch_buffer. Items are records (requests for
# gateway_requests). soma/queues.py keeps them.

# gauge (items): what the queue holds now (read at every scrape).
QUEUE_DEPTH = Gauge("soma_queue_depth", "Items an in-memory queue holds now", ["queue"])

# gauge (items): the most the queue held since the process started; never above its capacity.
QUEUE_HIGH_WATER = Gauge(
    "soma_queue_high_water",
    "Most items an in-memory queue held since the process started",
    ["queue"],
)

# gauge (items): the queue's bound (a setting, soma/settings.py); reaching it pushes back.
QUEUE_CAPACITY = Gauge("soma_queue_capacity", "Bound of an in-memory queue in items", ["queue"])

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

# Seconds from an event's time to a stage of its processing. Event time is the source record's
# timestamp (set by its producer, e.g. the gateway when it accepted the request): a client's
# own `occurred_at` may be hours old and would measure the client, not the plane.
_LATENCY_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

# histogram (seconds): event time -> a stage, by flow and stage. Stage `processed`: the batch
# holding the event is durable (commit order steps 1-3; flows/kit/batches.py), for every flow.
# Stage `wal`: the memory service acknowledged the write and its memory.wal record is durable
# (exported by the write-through flow once it exists).
FLOW_EVENT_LATENCY_SECONDS = Histogram(
    "soma_flow_event_latency_seconds",
    "Seconds from event time to a processing stage",
    ["flow", "stage"],
    buckets=_LATENCY_SECONDS,
)

# counter: partition assignments a worker received (one per completed rebalance it took part
# in), by flow; flows/kit/telemetry.py counts them.
FLOW_REBALANCES = Counter(
    "soma_flow_rebalances", "Rebalances (partition assignments) of a flow's worker", ["flow"]
)

# gauge: source partitions a worker actively owns after its last rebalance, by flow.
FLOW_ASSIGNED_PARTITIONS = Gauge(
    "soma_flow_assigned_partitions", "Source partitions a flow's worker owns", ["flow"]
)

# --- consumer lag and topics (the lag exporter, soma/lag_exporter.py) ----------------------------
# `group` is the consumer group, `flow` the flow that owns it (from the flow specs), `topic`
# the physical topic. Method and limits: docs/observability.md.

_GROUP_PARTITION = ["group", "flow", "topic", "partition"]

# gauge (records): end offset minus committed offset, as kafka-consumer-groups reports it. A
# partition the group never committed counts from its low watermark (flows reset to earliest).
CONSUMER_LAG_OFFSETS = Gauge(
    "soma_consumer_group_lag_offsets", "Records not yet committed by the group", _GROUP_PARTITION
)

# gauge (seconds): how long the oldest uncommitted record has waited: now minus the timestamp
# of the record at the committed offset (0 when caught up). Not set when no timestamp could be
# read in time.
CONSUMER_LAG_SECONDS = Gauge(
    "soma_consumer_group_lag_seconds",
    "Seconds the oldest uncommitted record of the partition has waited",
    _GROUP_PARTITION,
)

# gauge (offset): the group's committed offset (its low watermark when it never committed);
# standing still while the lag grows means a stalled consumer.
CONSUMER_COMMITTED_OFFSET = Gauge(
    "soma_consumer_group_committed_offset",
    "Committed offset of the group (low watermark when none)",
    _GROUP_PARTITION,
)

# gauge (records): a tenant's share of the group's lag on a topic, summed over partitions;
# exact when each lagging partition's uncommitted range fits the sample
# (SOMA_LAG_TENANT_SAMPLE records), else estimated from the sample; `(other)` sums the tenants
# beyond SOMA_LAG_TENANT_SERIES, `(unknown)` what could not be sampled.
CONSUMER_TENANT_LAG_OFFSETS = Gauge(
    "soma_consumer_group_tenant_lag_offsets",
    "Records of a tenant not yet committed by the group (estimated, see docs)",
    ["group", "flow", "topic", "tenant"],
)

# gauge (seconds): how long a tenant's oldest uncommitted record has waited (tenants seen in
# the sample only; exact for them, because the sample starts at the committed offset).
CONSUMER_TENANT_LAG_SECONDS = Gauge(
    "soma_consumer_group_tenant_lag_seconds",
    "Seconds the oldest uncommitted record of a tenant has waited",
    ["group", "flow", "topic", "tenant"],
)

# gauge (offset): a partition's end offset (high watermark) of every topic a plane group reads;
# its rate is the topic's produce rate, whoever produced.
TOPIC_END_OFFSET = Gauge(
    "soma_topic_end_offset", "End offset (high watermark) of a partition", ["topic", "partition"]
)

# gauge (records): records a dead-letter topic holds now (end minus low watermark, summed over
# partitions), by physical DLQ topic.
DEAD_LETTER_DEPTH = Gauge(
    "soma_dead_letter_depth", "Records held by a dead-letter topic", ["topic"]
)

# gauge (records): sum of a dead-letter topic's end offsets: every dead letter ever appended,
# so its increase over a window is the dead-letter growth, retention notwithstanding.
DEAD_LETTER_END_OFFSET = Gauge(
    "soma_dead_letter_end_offset", "Dead letters ever appended to a dead-letter topic", ["topic"]
)

# gauge: 1 when the exporter's last poll of the broker succeeded, 0 while it fails (the lag
# series then keep their last values; see soma_lag_exporter_last_success_timestamp_seconds).
LAG_EXPORTER_UP = Gauge(
    "soma_lag_exporter_up", "1 when the last poll of the broker succeeded", ["bootstrap"]
)

# gauge (unix seconds): when the lag series were last refreshed from the broker.
LAG_EXPORTER_LAST_SUCCESS = Gauge(
    "soma_lag_exporter_last_success_timestamp_seconds",
    "Unix time of the last successful poll",
    ["bootstrap"],
)

# counter: polls of the broker, by outcome (ok, failed).
LAG_EXPORTER_POLLS = Counter(
    "soma_lag_exporter_polls", "Polls of the broker by outcome", ["bootstrap", "outcome"]
)

# histogram (seconds): duration of one poll (offsets, watermarks, sampled records).
LAG_EXPORTER_POLL_SECONDS = Histogram(
    "soma_lag_exporter_poll_seconds",
    "Seconds one poll of the broker took",
    ["bootstrap"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

# --- bounded jobs (Bytewax; they join no group, so they report their own progress) ------------
# A job writes these to `<stack_dir>/metrics/jobs/<job>.prom` while it runs (prometheus_client's
# textfile format, written atomically); the lag exporter serves the files' series. `job` is the
# job name (tenant-counts), not the run id, to bound cardinality: a run overwrites the last.
JOB_REGISTRY = CollectorRegistry(auto_describe=True)

# gauge (records): records of the planned offset range not read yet, by job, topic, partition.
JOB_LAG_OFFSETS = Gauge(
    "soma_job_lag_offsets",
    "Records of a bounded job's range not read yet",
    ["job", "topic", "partition"],
    registry=JOB_REGISTRY,
)

# gauge (records): records of the planned range read so far, by job and topic.
JOB_RECORDS_READ = Gauge(
    "soma_job_records_read",
    "Records a bounded job has read",
    ["job", "topic"],
    registry=JOB_REGISTRY,
)

# gauge: 1 while the job runs, 0 once it ended.
JOB_RUNNING = Gauge(
    "soma_job_running", "1 while a bounded job runs", ["job"], registry=JOB_REGISTRY
)

# gauge (unix seconds): when the job last wrote its progress.
JOB_LAST_UPDATE = Gauge(
    "soma_job_last_update_timestamp_seconds",
    "Unix time of a bounded job's last progress report",
    ["job"],
    registry=JOB_REGISTRY,
)

# --- the outbox drain (flows/outbox_drain.py) ----------------------------------------------------

# gauge (writes): writes waiting in the outbox table, by partition (outbox-drain flow).
OUTBOX_PENDING = Gauge("soma_outbox_pending", "Writes waiting in the outbox", ["partition"])

# gauge (seconds): age of the oldest write waiting in the outbox, by partition (outbox-drain).
OUTBOX_OLDEST_AGE_SECONDS = Gauge(
    "soma_outbox_oldest_age_seconds", "Age of the oldest write in the outbox", ["partition"]
)

# counter: outbox writes handled by the drainer, by outcome: delivered, retried, dead_lettered
# (outbox-drain flow); the rate of `delivered` is the drain rate.
OUTBOX_DRAINED = Counter("soma_outbox_drained", "Outbox writes handled by the drainer", ["outcome"])

# --- recall cache (state/recall_cache.py) --------------------------------------------------------

# counter: recall answers looked up in the Redis cache by the gateway, by outcome: hit, miss
# (asked the backend, stored the answer), uncached (Redis failed or timed out, now or within
# the last few seconds: answered from the backend only).
# Every outcome is created at 0 when the gateway starts.
RECALL_CACHE_LOOKUPS = Counter(
    "soma_recall_cache_lookups",
    "Recall cache lookups by outcome (hit, miss, uncached)",
    ["outcome"],
)

RECALL_CACHE_OUTCOMES = ("hit", "miss", "uncached")

# counter: tenant/namespace generation bumps after acknowledged writes, by outcome: ok, failed
# (Redis failed or timed out; retried with the next batch). Failed bumps leave cached answers
# reachable until they expire (at most the cache TTL).
RECALL_CACHE_GENERATION_BUMPS = Counter(
    "soma_recall_cache_generation_bumps",
    "Recall cache generation bumps after acknowledged writes, by outcome (ok, failed)",
    ["outcome"],
)

BUMP_OUTCOMES = ("ok", "failed")

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
