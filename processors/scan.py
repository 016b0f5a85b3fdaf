"""Listing a table across workers: filter, newest first, cursor pages, and the k-way merge."""

from __future__ import annotations

import base64
import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

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


def encode_cursor(position: tuple[str, str]) -> str:
    raw = f"{position[0]}\x1f{position[1]}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """The position a cursor names; ValueError for one that no page produced."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise ValueError("not a cursor this API produced") from None
    value, sep, key = raw.partition("\x1f")
    if not sep:
        raise ValueError("not a cursor this API produced")
    return value, key
