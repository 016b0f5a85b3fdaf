"""The dead-letter index's pure parts and the cross-worker listing: statuses, keys, pages."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.dead_letters import UNKEYED, dead_letter_key
from processors.dlq_index import (
    DlqEntry,
    apply_action,
    entry_from_envelope,
    entry_partition_key,
    index_envelope,
)
from processors.scan import ScanQuery, decode_cursor, encode_cursor, merge_pages, select

ENVELOPE = {
    "dlq_id": "conversation.inbound:2:1337",
    "tenant": "acme",
    "flow": "session-counts",
    "reason": "schema",
    "original_key": "acme/s#1",
    "original_key_encoding": "utf8",
    "error_class": "schemas.errors.SchemaValidationError",
    "error_message": "x" * 2000,
    "failed_at": "2026-03-14T09:26:53.589Z",
    "source_topic": "conversation.inbound",
    "source_partition": 2,
    "source_offset": 1337,
    "consumer_group": "g",
    "attempts": 1,
}


def entry() -> DlqEntry:
    return entry_from_envelope(
        ENVELOPE, dlq_key="acme/s#1", topic="conversation.inbound.dlq", partition=1, offset=9
    )


def test_an_entry_keeps_its_position_and_the_start_of_the_error() -> None:
    made = entry()
    assert made.entry_id == "acme/s#1#conversation.inbound:2:1337"
    assert entry_partition_key(made.entry_id) == "acme/s#1"  # a '#' in the key is kept
    assert (made.dlq_topic, made.dlq_partition, made.dlq_offset) == (
        "conversation.inbound.dlq",
        1,
        9,
    )
    assert len(made.error_message) == 500 and made.status == "open"
    assert DlqEntry.from_dict(made.to_dict()) == made


def test_indexing_a_dead_letter_again_keeps_the_first_and_its_status() -> None:
    first = apply_action(entry(), {"action": "acked", "actor": "ops", "at": "2026-03-15T00:00:00Z"})
    again = entry_from_envelope(
        ENVELOPE, dlq_key="acme/s#1", topic="conversation.inbound.dlq", partition=1, offset=50
    )
    assert index_envelope(first, again) is first
    assert index_envelope(None, again) is again


def test_actions_move_the_status_and_count_replays() -> None:
    made = entry()
    moved = made
    for action, status in [
        ("replayed", "replayed"),
        ("reopened", "open"),
        ("replayed", "replayed"),
        ("purged", "purged"),
    ]:
        moved = apply_action(moved, {"action": action, "actor": "ops", "at": "t"})
        assert moved.status == status and moved.status_by == "ops"
    assert moved.replays == 2 and made.status == "open"


@pytest.mark.parametrize(
    ("tenant", "key", "encoding", "expected"),
    [
        ("acme", "acme/s1", "utf8", "acme/s1"),
        ("acme", None, "utf8", "acme"),  # no key: the tenant the headers named
        (None, None, "utf8", UNKEYED),
        (None, "not a tenant/s", "utf8", UNKEYED),  # a key naming no valid tenant
        ("acme", "beta/s1", "utf8", "acme"),  # a key that is not the tenant's
        ("acme", "YWNtZQ==", "base64", "acme"),
        ("acme", "acme/" + "s" * 600, "utf8", "acme"),  # too long to make a URL-sized id
    ],
)
def test_every_dead_letter_record_gets_a_key_starting_with_a_tenant(
    tenant: str | None, key: str | None, encoding: str, expected: str
) -> None:
    envelope = {"tenant": tenant, "original_key": key, "original_key_encoding": encoding}
    assert dead_letter_key(envelope) == expected


ROWS = st.lists(
    st.fixed_dictionaries(
        {
            "failed_at": st.sampled_from([f"2026-01-0{d}T00:00:00Z" for d in range(1, 6)]),
            "tenant": st.sampled_from(["acme", "beta"]),
            "n": st.integers(0, 3),
        }
    ),
    max_size=60,
)


@given(rows=ROWS, workers=st.integers(1, 4), limit=st.integers(1, 7), seed=st.integers(0, 99))
def test_paging_over_workers_is_the_same_as_sorting_everything(
    rows: list[dict[str, object]], workers: int, limit: int, seed: int
) -> None:
    keyed = [{"key": f"k{i:03d}", **row} for i, row in enumerate(rows)]
    shards: list[list[dict[str, object]]] = [[] for _ in range(workers)]
    rng = random.Random(seed)
    for row in keyed:
        shards[rng.randrange(workers)].append(row)
    expected = sorted(
        (r for r in keyed if r["tenant"] == "acme"),
        key=lambda r: (r["failed_at"], r["key"]),
        reverse=True,
    )
    seen: list[dict[str, object]] = []
    after = None
    for _ in range(100):
        query = ScanQuery("failed_at", {"tenant": "acme"}, after=after, limit=limit)
        worker_query = ScanQuery("failed_at", {"tenant": "acme"}, after=after, limit=limit + 1)
        page, cursor = merge_pages([select(shard, worker_query) for shard in shards], query)
        seen.extend(page)
        if cursor is None:
            break
        after = decode_cursor(cursor)
    assert seen == expected


def test_time_windows_and_bad_cursors() -> None:
    rows = [{"key": str(i), "failed_at": f"2026-01-0{i}T00:00:00Z"} for i in range(1, 6)]
    query = ScanQuery("failed_at", {}, since="2026-01-02", until="2026-01-04", limit=10)
    assert [r["key"] for r in select(rows, query)] == ["3", "2"]
    assert decode_cursor(encode_cursor(("2026-01-01", "a#b/c"))) == ("2026-01-01", "a#b/c")
    with pytest.raises(ValueError):
        decode_cursor("!!not-a-cursor")
