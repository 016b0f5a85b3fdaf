"""Pure helpers around the session-count flows: worker identity and per-tenant counts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.tenant_counts import (
    OffsetRange,
    TenantCount,
    add_event,
    rfc3339,
    tenant_event_count,
    tenant_for_key,
)
from processors.worker_identity import worker_client_id, worker_url
from schemas import SchemaValidationError, validate


@given(port=st.integers(1, 65535), host=st.sampled_from(["127.0.0.1", "worker-3", "10.0.0.7"]))
def test_client_id_round_trips_to_the_worker_url(port: int, host: str) -> None:
    assert worker_url(worker_client_id(host, port)) == f"http://{host}:{port}"


@pytest.mark.parametrize(
    "client_id",
    [
        "aiokafka-1",
        "soma-worker@",
        "soma-worker@host",
        "soma-worker@host:0",
        "soma-worker@host:x",
        "rdkafka",
    ],
)
def test_other_clients_have_no_url(client_id: str) -> None:
    assert worker_url(client_id) is None


@pytest.mark.parametrize(("host", "port"), [("", 1), ("a:b", 1), ("h", 0), ("h", 70000)])
def test_client_id_refuses_unusable_addresses(host: str, port: int) -> None:
    with pytest.raises(ValueError):
        worker_client_id(host, port)


def test_tenant_count_tracks_count_and_window() -> None:
    acc = None
    for ts in (5_000, 1_000, 9_000):
        acc = add_event(acc, ts)
    assert acc == TenantCount(count=3, first_ms=1_000, last_ms=9_000)
    assert tenant_for_key(b"acme/s-1") == "acme" == tenant_for_key("acme")


def test_tenant_event_count_record_matches_its_schema() -> None:
    record = tenant_event_count(
        "acme",
        TenantCount(count=3, first_ms=1_700_000_000_000, last_ms=1_700_000_000_999),
        source_topic="conversation.inbound",
        offsets=[OffsetRange(0, 0, 10)],
        job_id="j-1",
        computed_at_ms=1_700_000_001_000,
    )
    validate("tenant_event_count", record)
    assert record["window_start"] == "2023-11-14T22:13:20.000Z"
    assert record["window_end"] == "2023-11-14T22:13:21.000Z"  # exclusive: last event + 1 ms
    assert record["offsets"] == [{"partition": 0, "from_offset": 0, "to_offset": 10}]
    with pytest.raises(SchemaValidationError):
        validate("tenant_event_count", {**record, "count": -1})


def test_offset_range_is_half_open() -> None:
    bounds = OffsetRange(partition=2, from_offset=5, to_offset=8)
    assert [o for o in range(10) if o in bounds] == [5, 6, 7]
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"
