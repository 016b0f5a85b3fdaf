"""The bounded Bytewax tenant-counts job on the real broker: exact counts, murmur2 placement."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from flows.jobs.tenant_counts import run_job
from processors.partitioning import partition_for
from schemas import validate
from soma.settings import Settings
from tests.support.flows import (
    REPO,
    TestProducer,
    create_topics,
    delete_test_topics,
    isolated_settings,
    read_topic,
)

pytestmark = pytest.mark.integration

TENANTS = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne"]


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    settings = isolated_settings(stack_dir=tmp_path)
    create_topics(settings, ("conversation.inbound", "analytics.session_counts"))
    yield settings
    delete_test_topics(settings)


def produce(settings: Settings, per_tenant: dict[str, int]) -> None:
    producer = TestProducer(settings)
    # Several sessions per tenant, so a tenant's events spread over many partitions.
    producer.send((tenant, f"s{i % 5}") for tenant, n in per_tenant.items() for i in range(n))
    producer.flush()


def output(settings: Settings) -> list[tuple[str, int, dict[str, object]]]:
    """(key, partition, value) of every record the job wrote."""
    records = read_topic(settings, settings.topic_prefix + "analytics.session_counts")
    return [(r.key().decode(), r.partition(), orjson.loads(r.value())) for r in records]


def test_counts_each_tenant_once_on_its_murmur2_partition(settings: Settings) -> None:
    expected = {tenant: 40 + 17 * i for i, tenant in enumerate(TENANTS)}
    produce(settings, expected)

    report = run_job(settings, job_id="job-1")

    written = output(settings)
    assert report.counts == expected
    assert {key: value["count"] for key, _, value in written} == expected
    assert len(written) == len(TENANTS)  # one record per tenant, no duplicates
    partitions = 6  # analytics.session_counts in the registry
    for key, partition, value in written:
        assert partition == partition_for(key.encode(), partitions), key
        validate("tenant_event_count", value)
        assert value["tenant"] == key and value["job_id"] == "job-1"
        assert value["window_start"] < value["window_end"]
    total_range = sum(r["to_offset"] - r["from_offset"] for r in written[0][2]["offsets"])
    assert total_range == sum(expected.values())


def test_cli_counts_only_the_requested_offset_range(settings: Settings) -> None:
    produce(settings, {"acme": 30, "globex": 30})
    first_round = settings.topic_prefix + "conversation.inbound"
    before = {r.partition(): r.offset() for r in read_topic(settings, first_round)}
    produce(settings, {"acme": 12, "globex": 30, "initech": 5})
    # Records after the first round, as offsets per partition: the job's --start-offset is one
    # number for all partitions, so compute what it includes.
    start = 1 + max(before.values())
    in_range = Counter(
        r.key().decode().split("/")[0]
        for r in read_topic(settings, first_round)
        if r.offset() >= start
    )

    assert 0 < sum(in_range.values()) < 30 + 30 + 12 + 30 + 5, "the range must cut the topic"
    env = {
        **os.environ,
        "SOMA_TOPIC_PREFIX": settings.topic_prefix,
        "SOMA_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "soma.cli_flow",
            "job",
            "run",
            "tenant-counts",
            "--start-offset",
            str(start),
            "--job-id",
            "range-job",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert {key: value["count"] for key, _, value in output(settings)} == dict(in_range)
    assert f"{sum(in_range.values())} events" in result.stdout
