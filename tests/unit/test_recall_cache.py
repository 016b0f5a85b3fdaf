"""Recall cache: keys, encoding, and the generation race, on an in-memory Redis stand-in."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from processors.memory import RecallHit, RecallQuery
from processors.recall_cache import (
    answer_key,
    decode_hits,
    encode_hits,
    generation_key,
    parse_generation,
    query_fingerprint,
)
from state.recall_cache import GenerationBumper, Outcome, RecallCache, bump_generations


class _Pipeline:
    def __init__(self, store: MemoryRedis) -> None:
        self._store, self._keys = store, list[str]()

    async def __aenter__(self) -> _Pipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    def incr(self, key: str) -> _Pipeline:
        self._keys.append(key)
        return self

    async def execute(self) -> list[int]:
        self._store.check()
        return [self._store.incr_now(key) for key in self._keys]


class MemoryRedis:
    """The four commands the cache uses, in a dict; `down` makes every command fail."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.down = False
        self.calls = 0

    def check(self) -> None:
        self.calls += 1
        if self.down:
            raise RedisConnectionError("Connection refused")

    async def get(self, key: str) -> bytes | None:
        self.check()
        return self.data.get(key)

    async def set(self, key: str, value: bytes, ex: int) -> None:
        self.check()
        assert ex > 0
        self.data[key] = value

    def incr_now(self, key: str) -> int:
        value = parse_generation(self.data.get(key)) + 1
        self.data[key] = str(value).encode()
        return value

    def pipeline(self, transaction: bool = True) -> _Pipeline:
        return _Pipeline(self)


def _redis(store: MemoryRedis) -> Redis:
    return cast(Redis, store)


def _query(text: str = "heron", **kwargs: Any) -> RecallQuery:
    return RecallQuery(tenant="acme", namespace="ns", query=text, **kwargs)


def _hit(text: str) -> RecallHit:
    return RecallHit(key=f"acme/ns/default/{text}", score=0.5, value={"text": text})


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_answer_keys_differ_by_generation_scope_and_parameters() -> None:
    query = _query()
    assert answer_key(query, 1) != answer_key(query, 2)
    assert answer_key(query, 1) == answer_key(_query(), 1)
    others = [
        _query("heron dawn"),
        _query(top_k=4),
        _query(session_id="s1"),
        RecallQuery(tenant="acme", namespace="ns", universe="u2", query="heron"),
        RecallQuery(tenant="other", namespace="ns", query="heron"),
    ]
    keys = {answer_key(other, 1) for other in others} | {answer_key(query, 1)}
    assert len(keys) == len(others) + 1
    assert answer_key(query, 7).startswith("soma:recall:ans:v1:acme/ns/default/g7/")
    assert generation_key("acme", "ns") == "soma:recall:gen:acme/ns"


def test_a_missing_generation_is_zero() -> None:
    assert parse_generation(None) == 0
    assert parse_generation(b"12") == 12


@given(
    st.lists(
        st.builds(
            RecallHit,
            key=st.one_of(st.none(), st.text(max_size=20)),
            score=st.floats(min_value=0, max_value=1),
            value=st.dictionaries(
                st.text(max_size=5), st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=3
            ),
            occurred_at=st.one_of(st.none(), st.datetimes(timezones=st.just(UTC))),
            coordinate=st.one_of(st.none(), st.tuples(st.floats(0, 1), st.floats(0, 1))),
            layer=st.one_of(st.none(), st.just("ltm")),
        ),
        max_size=5,
    )
)
def test_hits_round_trip(hits: list[RecallHit]) -> None:
    assert decode_hits(encode_hits(hits)) == hits


def test_a_damaged_entry_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not a cached recall answer"):
        decode_hits(b'{"not": "a list of hits"}')


def test_the_fingerprint_ignores_nothing_that_shapes_the_answer() -> None:
    assert query_fingerprint(_query(min_score=0.5)) != query_fingerprint(_query())
    assert query_fingerprint(_query(max_age_seconds=60)) != query_fingerprint(_query())


async def test_miss_then_hit_then_a_bump_makes_the_answer_unreachable() -> None:
    store = MemoryRedis()
    cache = RecallCache(_redis(store))
    answers = [[_hit("first")], [_hit("first"), _hit("second")]]

    async def fetch() -> list[RecallHit]:
        return answers.pop(0)

    assert await cache.recall(_query(), fetch) == ([_hit("first")], Outcome.MISS)
    assert await cache.recall(_query(), fetch) == ([_hit("first")], Outcome.HIT)
    assert await bump_generations(_redis(store), {("acme", "ns")})
    hits, outcome = await cache.recall(_query(), fetch)
    assert outcome is Outcome.MISS and [h.value["text"] for h in hits] == ["first", "second"]


async def test_a_write_acknowledged_during_the_query_leaves_its_answer_unreachable() -> None:
    """The race: the backend answers without the write, the write's bump lands before the
    answer is stored. Stored under the generation read before the query, nobody reads it."""
    store = MemoryRedis()
    cache = RecallCache(_redis(store))
    backend = [_hit("old")]

    async def slow_query() -> list[RecallHit]:
        answer = list(backend)  # the backend's snapshot: before the write
        backend.append(_hit("new"))  # the write is acknowledged...
        await bump_generations(_redis(store), {("acme", "ns")})  # ...and bumped
        return answer

    async def query() -> list[RecallHit]:
        return list(backend)

    stale, outcome = await cache.recall(_query(), slow_query)
    assert outcome is Outcome.MISS and stale == [_hit("old")]
    hits, outcome = await cache.recall(_query(), query)
    assert outcome is Outcome.MISS, "the stale answer must not be reachable"
    assert hits == [_hit("old"), _hit("new")]
    assert (await cache.recall(_query(), query)) == (hits, Outcome.HIT)


async def test_another_namespaces_bump_keeps_the_answer() -> None:
    store = MemoryRedis()
    cache = RecallCache(_redis(store))

    async def fetch() -> list[RecallHit]:
        return [_hit("a")]

    await cache.recall(_query(), fetch)
    await bump_generations(_redis(store), {("acme", "other"), ("zeta", "ns")})
    assert (await cache.recall(_query(), fetch))[1] is Outcome.HIT


async def test_redis_down_answers_uncached_and_skips_redis_for_the_cooldown() -> None:
    store, clock = MemoryRedis(), Clock()
    cache = RecallCache(_redis(store), cooldown_s=5, clock=clock)
    store.down = True

    async def fetch() -> list[RecallHit]:
        return [_hit("a")]

    assert await cache.recall(_query(), fetch) == ([_hit("a")], Outcome.UNCACHED)
    calls = store.calls
    assert (await cache.recall(_query(), fetch))[1] is Outcome.UNCACHED
    assert store.calls == calls, "within the cooldown Redis is not asked"
    store.down, clock.now = False, 5.0
    assert (await cache.recall(_query(), fetch))[1] is Outcome.MISS
    assert (await cache.recall(_query(), fetch))[1] is Outcome.HIT


async def test_an_answer_json_cannot_hold_is_answered_but_not_stored() -> None:
    store = MemoryRedis()
    cache = RecallCache(_redis(store))
    huge = RecallHit(key="k", score=1.0, value={"n": 2**70})

    async def fetch() -> list[RecallHit]:
        return [huge]

    assert await cache.recall(_query(), fetch) == ([huge], Outcome.MISS)
    assert (await cache.recall(_query(), fetch))[1] is Outcome.MISS


async def test_backend_errors_propagate_and_nothing_is_cached() -> None:
    store = MemoryRedis()
    cache = RecallCache(_redis(store))

    async def failing() -> list[RecallHit]:
        raise RuntimeError("backend down")

    with pytest.raises(RuntimeError):
        await cache.recall(_query(), failing)
    assert not [key for key in store.data if ":ans:" in key]


async def test_a_failed_bump_is_retried_with_the_next_batch_after_the_cooldown() -> None:
    store, clock = MemoryRedis(), Clock()
    bumper = GenerationBumper(_redis(store), cooldown_s=5, clock=clock)
    store.down = True
    assert not await bumper.bump({("acme", "ns")})
    store.down = False
    assert not await bumper.bump({("acme", "b")}), "within the cooldown nothing is sent"
    assert bumper.pending == {("acme", "ns"), ("acme", "b")}
    clock.now = 5.0
    assert await bumper.bump(set[tuple[str, str]]())
    assert bumper.pending == set()
    assert store.data[generation_key("acme", "ns")] == b"1"
    assert store.data[generation_key("acme", "b")] == b"1"


async def test_bump_generations_never_raises_for_redis() -> None:
    store = MemoryRedis()
    store.down = True
    scopes: Collection[tuple[str, str]] = {("acme", "ns")}
    assert await bump_generations(_redis(store), scopes) is False
    assert await bump_generations(_redis(store), ()) is True


def test_occurred_at_survives_with_its_offset() -> None:
    hit = RecallHit(
        key="k", score=1.0, value={"a": 1}, occurred_at=datetime(2026, 1, 2, tzinfo=UTC)
    )
    assert decode_hits(encode_hits([hit]))[0].occurred_at == hit.occurred_at
