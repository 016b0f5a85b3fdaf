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
