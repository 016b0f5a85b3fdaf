"""Listing a table across workers: filter, newest first, cursor pages, and the k-way merge."""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

Row = dict[str, Any]  # {"key": ..., **value}


@dataclass(frozen=True)
class ScanQuery:
    """Which rows, in which order: `order_by` descending, then key descending."""

    order_by: str
    equals: Mapping[str, str]  # field -> required value (compared as text)
    since: str | None = None  # order_by >= since (RFC 3339 text compares in time order)
    until: str | None = None  # order_by < until
    after: tuple[str, str] | None = None  # the cursor: rows strictly after this (value, key)
    limit: int = 50


def sort_key(row: Row, order_by: str) -> tuple[str, str]:
    return (str(row.get(order_by) or ""), str(row["key"]))


def matches(row: Row, query: ScanQuery) -> bool:
    for field, wanted in query.equals.items():
        value = row.get(field)
        if (value if isinstance(value, str) else str(value)) != wanted:
            return False
    position = str(row.get(query.order_by) or "")
    if query.since is not None and position < query.since:
        return False
    if query.until is not None and position >= query.until:
        return False
    return query.after is None or sort_key(row, query.order_by) < query.after


def select(rows: Iterable[Row], query: ScanQuery) -> list[Row]:
    """One worker's page: the matching rows, newest first, at most `limit`."""
    kept = [row for row in rows if matches(row, query)]
    return heapq.nlargest(query.limit, kept, key=lambda row: sort_key(row, query.order_by))


def merge_pages(pages: Iterable[list[Row]], query: ScanQuery) -> tuple[list[Row], str | None]:
    """The first `limit` rows of several workers' pages, and the cursor of the next page.

    Each page is already the newest `limit` rows of its partitions, so the newest `limit` of
    all of them are the newest `limit` overall.
    """
    merged = heapq.merge(*pages, key=lambda row: sort_key(row, query.order_by), reverse=True)
    rows = list(_take(merged, query.limit + 1))
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    cursor = encode_cursor(sort_key(rows[-1], query.order_by)) if more and rows else None
    return rows, cursor


def _take(rows: Iterable[Row], n: int) -> Iterable[Row]:
    for i, row in enumerate(rows):
        if i >= n:
            return
        yield row


# A cursor is `<value>,<key>`, each part percent-encoded (so neither holds a comma): every
# string matching CURSOR_PATTERN names a position, and the API can publish the pattern as the
# parameter's whole contract.
CURSOR_PATTERN = r"^[A-Za-z0-9._~%-]*,[A-Za-z0-9._~%-]*$"
_CURSOR = re.compile(CURSOR_PATTERN)


def encode_cursor(position: tuple[str, str]) -> str:
    return f"{quote(position[0], safe='')},{quote(position[1], safe='')}"


def decode_cursor(cursor: str) -> tuple[str, str]:
    """The position a cursor names; ValueError for a string of another shape."""
    if not _CURSOR.fullmatch(cursor):
        raise ValueError(f"a cursor matches {CURSOR_PATTERN}")
    value, _, key = cursor.partition(",")
    return unquote(value), unquote(key)
