"""JSON Schema → Avro: every value the schema accepts survives an archive file unchanged."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.archive import archive_schema, from_datum, to_datum
from processors.avro_mapping import MappingError, avro_mapping
from processors.dead_letters import SourceRecord
from schemas import load_schema, schema_ids, validate

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
PRINTABLE = st.characters(min_codepoint=32, max_codepoint=0x2FFF, exclude_characters="\x7f")
TEXT = st.text(alphabet=PRINTABLE, min_size=1, max_size=30)
SCOPE_PART = st.text(  # a memory key's part: no '/'
    alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FFF, exclude_characters="\x7f/"),
    min_size=1,
    max_size=30,
)
TIME = st.sampled_from(["2025-03-14T09:26:53.589Z", "2024-02-29T23:59:59+02:00"])
TRACE = st.fixed_dictionaries(
    {"traceparent": st.just("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")},
    optional={"tracestate": st.text(max_size=20), "baggage": st.text(max_size=20)},
)
UUID = st.uuids().map(str)


def strict(value: Any) -> bytes:
    """Equality that tells 1 from 1.0 and true from 1 (Python's == does not)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


WAL = st.fixed_dictionaries(
    {
        "tenant": st.from_regex(r"[A-Za-z0-9_.:-]{1,20}", fullmatch=True),
        "idempotency_key": st.from_regex(r"[!-~]{8,40}", fullmatch=True),
        "source_topic": st.just("memory.requests"),
        "source_partition": st.integers(0, 100),
        "source_offset": st.integers(0, 2**62),
        "memory_id": st.none() | st.text(max_size=20),
        "payload": st.dictionaries(st.text(max_size=8), JSON, max_size=5),
        "acknowledged_at": TIME,
        "event_time": TIME,
        "backend": st.sampled_from(["postgres", "somabrain"]),
    },
    optional={
        "event_id": UUID,
        "session_id": TEXT,
        "namespace": SCOPE_PART,
        "memory_type": st.sampled_from(["episodic", "semantic", "procedural"]),
        "request_id": st.from_regex(r"[!-~]{1,30}", fullmatch=True),
        "trace_context": TRACE,
    },
)
AUDIT = st.fixed_dictionaries(
    {
        "event_id": UUID,
        "tenant": st.just("acme"),
        "actor": TEXT,
        "action": st.sampled_from(["dlq.replay", "topics.apply"]),
        "decision": st.sampled_from(["allow", "deny", "n/a"]),
        "target": TEXT,
        "occurred_at": TIME,
    },
    optional={
        "reason": st.none() | st.text(max_size=20),  # optional AND nullable: absent != null
        "details": st.dictionaries(st.text(max_size=6), JSON, max_size=4),
        "run_id": TEXT,
        "trace_context": TRACE,
    },
)
TOOL = st.fixed_dictionaries(
    {
        "event_id": UUID,
        "tenant": st.just("acme"),
        "run_id": TEXT,
        "tool_name": st.just("search"),
        "status": st.sampled_from(["started", "succeeded", "failed"]),
        "occurred_at": TIME,
    },
    optional={"result": JSON, "latency_ms": st.integers(0, 10**6)},  # result: any JSON, null too
)


def through_a_file(schema_id: str, value: dict[str, Any]) -> dict[str, Any]:
    mapping = avro_mapping(load_schema(schema_id), schema_id)
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(mapping.schema), [mapping.to_avro(value)])
    out.seek(0)
    (datum,) = list(fastavro.reader(out))
    decoded: dict[str, Any] = mapping.from_avro(datum)
    return decoded


@pytest.mark.parametrize(
    ("schema_id", "strategy"), [("memory_wal", WAL), ("agent_audit", AUDIT), ("agent_tool", TOOL)]
)
def test_valid_events_round_trip_exactly(schema_id: str, strategy: st.SearchStrategy[Any]) -> None:
    @settings(max_examples=150, deadline=None)
    @given(strategy)
    def check(value: dict[str, Any]) -> None:
        validate(schema_id, value)  # the strategy makes only values the schema accepts
        assert strict(through_a_file(schema_id, value)) == strict(value)

    check()


@pytest.mark.parametrize("schema_id", schema_ids())
def test_every_schema_maps_and_its_samples_round_trip(schema_id: str) -> None:
    from importlib import resources

    samples = resources.files("schemas").joinpath("samples", schema_id, "valid")
    found = [orjson.loads(p.read_bytes()) for p in samples.iterdir() if p.name.endswith(".json")]
    assert found, schema_id
    for sample in found:
        assert strict(through_a_file(schema_id, sample)) == strict(sample)


def test_values_off_the_schema_are_refused_by_the_mapping() -> None:
    mapping = avro_mapping(load_schema("memory_wal"), "memory_wal")
    for bad in ({"tenant": "a"}, {"tenant": 5}, [], {"unknown": 1}):
        with pytest.raises(MappingError):
            mapping.to_avro(bad)


RECORDS = st.builds(
    SourceRecord,
    topic=st.just("p.memory.wal"),
    partition=st.integers(0, 5),
    offset=st.integers(0, 2**40),
    key=st.none() | st.binary(max_size=20),
    value=st.none() | st.binary(max_size=30) | WAL.map(orjson.dumps),
    headers=st.lists(
        st.tuples(st.text(max_size=8), st.none() | st.binary(max_size=8)), max_size=4
    ).map(tuple),
    timestamp_ms=st.integers(0, 2**45),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(RECORDS, max_size=8))
def test_archived_records_come_back_as_they_were(records: list[SourceRecord]) -> None:
    mapping = avro_mapping(load_schema("memory_wal"), "memory_wal")
    out = io.BytesIO()
    data = [to_datum(record, mapping) for record in records]
    fastavro.writer(out, fastavro.parse_schema(archive_schema(mapping)), [d for d, _ in data])
    out.seek(0)
    back = [from_datum(d, mapping, "p.memory.wal") for d in fastavro.reader(out)]
    assert len(back) == len(records)
    for original, copy, (_, typed) in zip(records, back, data, strict=True):
        assert (copy.key, copy.headers, copy.partition, copy.offset, copy.timestamp_ms) == (
            original.key,
            original.headers,
            original.partition,
            original.offset,
            original.timestamp_ms,
        )
        if typed:  # a WAL record: JSON-equal (field order follows the schema)
            assert strict(orjson.loads(copy.value or b"")) == strict(
                orjson.loads(original.value or b"")
            )
        else:  # anything else (garbage, a tombstone) byte for byte
            assert copy.value == original.value
