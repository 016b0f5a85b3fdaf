"""Strict JSON: what it accepts round-trips unchanged; what it refuses names the field and rule."""

from __future__ import annotations

import json
import time
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import MalformedJson, SchemaValidationError
from schemas.strict_json import INT64_MAX, INT64_MIN, MAX_DEPTH, loads_strict


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        (b'{"message":"a\\ud800b"}', "/message", "unicode"),
        (b'{"m":{"\\udc00":1}}', "/m/\\udc00", "unicode"),
        (b'{"metadata":{"x":18446744073709551616}}', "/metadata/x", "maximum"),
        (b'{"x":9223372036854775808}', "/x", "maximum"),
        # orjson reads this as a float that rounds to -2**63: the exact reading refuses it.
        (b'{"x":-9223372036854775809}', "/x", "minimum"),
        (b'{"x":[1,2,1e19]}', "/x/2", "maximum"),
        (b'{"payload":{"x":NaN}}', "/payload/x", "finite"),
        (b'{"x":[1,-Infinity]}', "/x/1", "finite"),
        (b'{"x":1e400}', "/x", "finite"),
        (b'"\\ud800"', "/", "unicode"),
        (b"[" * 10_000 + b"]" * 10_000, "/", "maxDepth"),
    ],
)
def test_refusals_name_field_and_rule(body: bytes, field: str, rule: str) -> None:
    with pytest.raises(SchemaValidationError) as refused:
        loads_strict(body)
    assert (refused.value.field, refused.value.rule) == (field, rule)
    assert field in refused.value.message and rule in refused.value.message
    refused.value.message.encode("utf-8")  # encodable, so it can go into a response


def test_depth_is_counted_from_the_root() -> None:
    assert loads_strict(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None
    with pytest.raises(SchemaValidationError) as refused:
        loads_strict(b'{"a":' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}")
    assert refused.value.rule == "maxDepth"
    assert refused.value.field == "/a" + "/0" * (MAX_DEPTH - 1)


def test_a_hostile_key_is_echoed_bounded() -> None:
    body = b'{"' + b"k" * 100_000 + b'":NaN}'
    with pytest.raises(SchemaValidationError) as refused:
        loads_strict(body)
    assert len(refused.value.field) < 100
    assert refused.value.field.endswith("…")


@pytest.mark.parametrize("body", [b'{"a":', b"\xff", b"\xef\xbb\xbf{}", b"", b"{'a':1}"])
def test_not_json_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedJson):
        loads_strict(body)


def test_edges_of_the_accepted_range() -> None:
    body = b'{"a":9223372036854775807,"b":-9223372036854775808,"c":1.5e18,"d":"\\u0000"}'
    assert loads_strict(body) == {"a": INT64_MAX, "b": INT64_MIN, "c": 1.5e18, "d": "\x00"}
    assert loads_strict(b'"\\ud83d\\ude00"') == "\U0001f600"  # a surrogate *pair* is fine


def test_big_bodies_stay_cheap() -> None:
    # A 2 MiB array of a million numbers, and the same with one number out of range at the end.
    numbers = b",".join([b"1"] * 1_000_000)
    started = time.perf_counter()
    loads_strict(b'{"a":[' + numbers + b"]}")
    with pytest.raises(SchemaValidationError):
        loads_strict(b'{"a":[' + numbers + b",99999999999999999999]}")
    assert time.perf_counter() - started < 2.0


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(INT64_MIN, INT64_MAX)
    | st.floats(allow_nan=False, allow_infinity=False, min_value=-1e18, max_value=1e18)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@given(json_values)
def test_accepted_values_round_trip_unchanged(value: Any) -> None:
    assert loads_strict(orjson.dumps(value)) == value
    # The standard library's encoding (ensure_ascii escapes) reads the same.
    assert loads_strict(json.dumps(value).encode()) == value
