"""Record keys always start with the tenant; traceparent parsing follows W3C."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.keys import KeyError_, KeyRule, record_key, tenant_of
from processors.tracing import new_traceparent, parse_traceparent

tenants = st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True)


@given(tenants, st.text(min_size=1, max_size=40))
def test_session_key_starts_with_tenant(tenant: str, session: str) -> None:
    key = record_key(KeyRule.TENANT_SESSION, {"session_id": session}, tenant)
    assert key == f"{tenant}/{session}"
    assert tenant_of(key) == tenant


def test_missing_key_field_names_the_field() -> None:
    with pytest.raises(KeyError_, match="run_id"):
        record_key(KeyRule.TENANT_RUN, {}, "t1")


def test_tenant_with_separator_is_refused() -> None:
    with pytest.raises(KeyError_):
        record_key(KeyRule.TENANT, {}, "a/b")


def test_dead_letter_keeps_original_key_of_same_tenant() -> None:
    assert record_key(KeyRule.ORIGINAL, {"original_key": "t1/s"}, "t1") == "t1/s"
    with pytest.raises(KeyError_):
        record_key(KeyRule.ORIGINAL, {"original_key": "t2/s"}, "t1")


def test_traceparent_round_trip_and_child_keeps_trace() -> None:
    parent = new_traceparent()
    parsed = parse_traceparent(parent.header())
    assert parsed == parent
    child = parent.child()
    assert child.trace_id == parent.trace_id and child.span_id != parent.span_id


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        "00-" + "0" * 32 + "-" + "1" * 16 + "-01",
        "ff-" + "a" * 32 + "-" + "b" * 16 + "-01",
        "00-" + "a" * 31 + "-" + "b" * 16 + "-01",
        # W3C: uppercase hex is invalid, the receiver starts a new trace.
        "00-" + "A" * 32 + "-" + "b" * 16 + "-01",
        "00-" + "a" * 32 + "-" + "B" * 16 + "-01",
    ],
)
def test_malformed_traceparent_is_ignored(value: str | None) -> None:
    assert parse_traceparent(value) is None
