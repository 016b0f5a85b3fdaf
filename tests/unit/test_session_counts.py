"""The idempotent session-count fold: replays after a crash never change the result."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.partitioning import partition_for
from processors.session_counts import EMPTY, SessionCount, fold, fold_batch


def test_fold_counts_new_offsets_and_skips_replays() -> None:
    state = fold(fold(EMPTY, 3), 7)
    assert state == SessionCount(count=2, offset=7)
    assert fold(state, 7) is state
    assert fold(state, 5) is state


def test_fold_batch_returns_every_touched_key_even_when_unchanged() -> None:
    start = {"a/1": SessionCount(count=4, offset=10)}
    out = fold_batch(start, [("a/1", 9), ("a/1", 10), ("b/2", 3)])
    # a/1 only saw replays: it comes back unchanged, so the flow re-publishes it.
    assert out == {"a/1": SessionCount(4, 10), "b/2": SessionCount(1, 3)}
    assert start == {"a/1": SessionCount(4, 10)}  # input untouched


def test_fold_batch_folds_several_events_of_one_key_in_order() -> None:
    out = fold_batch({}, [("t/s", 0), ("t/s", 1), ("t/s", 1), ("t/s", 4)])
    assert out == {"t/s": SessionCount(count=3, offset=4)}


@pytest.mark.parametrize(
    "raw",
    [
        {"count": 1},
        {"count": -1, "offset": 3},
        {"count": 1, "offset": "3"},
        {"count": True, "offset": 1.5},
    ],
)
def test_from_dict_refuses_malformed_values(raw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SessionCount.from_dict(raw)


def test_round_trip() -> None:
    state = SessionCount(count=12, offset=99)
    assert SessionCount.from_dict(state.to_dict()) == state


KEYS = [f"t{t}/s{s}" for t in range(3) for s in range(4)]
PARTITIONS = 3


@st.composite
def streams(draw: st.DrawFn) -> list[tuple[str, int]]:
    """A source topic read in order: keys land on murmur2 partitions, offsets grow per partition."""
    keys = draw(st.lists(st.sampled_from(KEYS), max_size=60))
    next_offset = Counter[int]()
    events = []
    for key in keys:
        partition = partition_for(key.encode(), PARTITIONS)
        events.append((key, next_offset[partition]))
        next_offset[partition] += 1
    return events


@settings(max_examples=300, deadline=None)
@given(stream=streams(), data=st.data())
def test_replaying_any_prefix_in_any_batching_gives_the_same_counts(
    stream: list[tuple[str, int]], data: st.DataObject
) -> None:
    """Crash after folding up to `done`, restart from an earlier commit `resume`, repeat."""
    state: dict[str, SessionCount] = {}
    position = 0
    for _ in range(data.draw(st.integers(0, 4), label="crashes")):
        done = data.draw(st.integers(position, len(stream)), label="folded before the crash")
        state = _fold_in_batches(state, stream[position:done], data)
        position = data.draw(st.integers(0, done), label="committed offset it resumes from")
    state = _fold_in_batches(state, stream[position:], data)

    assert state == fold_batch({}, stream)
    assert {k: v.count for k, v in state.items()} == dict(Counter(k for k, _ in stream))


@settings(max_examples=200, deadline=None)
@given(stream=streams(), duplicates=st.lists(st.integers(0, 59), max_size=20))
def test_duplicated_events_are_counted_once(
    stream: list[tuple[str, int]], duplicates: list[int]
) -> None:
    """At-least-once delivery re-delivers already-seen events right after their originals."""
    redelivered = []
    for index, event in enumerate(stream):
        redelivered.append(event)
        redelivered.extend(event for d in duplicates if d == index)
    assert fold_batch({}, redelivered) == fold_batch({}, stream)


def _fold_in_batches(
    state: dict[str, SessionCount], events: list[tuple[str, int]], data: st.DataObject
) -> dict[str, SessionCount]:
    size = data.draw(st.integers(1, 8), label="batch size")
    for start in range(0, len(events), size):
        state = {**state, **fold_batch(state, events[start : start + size])}
    return state
