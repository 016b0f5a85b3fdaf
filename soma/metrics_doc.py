"""The docs' table of every metric (docs/observability.md, between markers; a test compares)."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.registry import CollectorRegistry

from soma import metrics

# Who exports a family, by name prefix (first match wins).
_EXPORTERS = (
    ("soma_gateway_", "gateway"),
    ("soma_flow_", "every flow worker"),
    ("soma_queue_", "gateway, every flow worker"),
    ("soma_job_", "bounded jobs, served by the lag exporter"),
    ("soma_consumer_group_", "lag exporter"),
    ("soma_topic_", "lag exporter"),
    ("soma_dead_letter_", "lag exporter"),
    ("soma_lag_exporter_", "lag exporter"),
    ("soma_outbox_", "outbox-drain flow"),
    ("soma_replication_", "replication flow"),
    ("soma_memory_backend_", "any process running a memory backend"),
    ("soma_recall_cache_lookups", "gateway"),
    ("soma_recall_cache_", "write-through worker (outbox-drain too, once built)"),
)
_SUFFIX = {"counter": "_total", "histogram": "_bucket/_sum/_count"}


def _families(registry: CollectorRegistry) -> list[tuple[str, str, tuple[str, ...], str]]:
    found = []
    # prometheus_client keeps a family's name, kind, labels and help on private attributes.
    for collector in registry._collector_to_names:  # type: ignore[attr-defined]
        family: Any = collector
        name = getattr(family, "_name", "")
        if name.startswith("soma_"):
            found.append((name, family._type, tuple(family._labelnames), family._documentation))
    return found


def metrics_table_markdown() -> str:
    rows = [
        "| metric | kind | labels | exported by | meaning |",
        "|---|---|---|---|---|",
    ]
    for name, kind, labels, meaning in _families(REGISTRY) + _families(metrics.JOB_REGISTRY):
        exporter = next((who for prefix, who in _EXPORTERS if name.startswith(prefix)), "?")
        exposed = f"`{name}{_SUFFIX.get(kind, '')}`"
        rows.append(f"| {exposed} | {kind} | {', '.join(labels)} | {exporter} | {meaning} |")
    return "\n".join(rows) + "\n"
