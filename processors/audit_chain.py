"""Per-tenant hash chain of audit events: append idempotently, verify, name what was tampered.

Each link stores the hash of the link before it: `hash = sha256(prev_hash + "\\n" + canonical
event)`, the first link's predecessor being GENESIS. Changing an event breaks its own hash;
removing one leaves a link whose predecessor is missing; moving one leaves links whose
predecessor exists but is not the link before them. The sequence number orders the links for
reading, the hashes say whether that order and content are the ones appended.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

GENESIS = "0" * 64


def canonical(event: Mapping[str, Any]) -> str:
    """The text that is hashed: JSON with sorted keys and no spaces (stored as is)."""
    return orjson.dumps(event, option=orjson.OPT_SORT_KEYS).decode()


def link_hash(prev_hash: str, canonical_event: str) -> str:
    return hashlib.sha256(f"{prev_hash}\n{canonical_event}".encode()).hexdigest()


@dataclass(frozen=True)
class ChainHead:
    """The last link of a tenant's chain (seq 0 and GENESIS for an empty chain)."""

    seq: int = 0
    hash: str = GENESIS


@dataclass(frozen=True)
class Link:
    """One stored audit event and its place in the chain."""

    seq: int
    event_id: str
    canonical: str
    prev_hash: str
    hash: str


def append(
    head: ChainHead, events: Iterable[Mapping[str, Any]], known_ids: set[str]
) -> tuple[ChainHead, list[Link]]:
    """The links for `events` after `head`, skipping event ids already in the chain.

    Delivery is at-least-once: a replayed event (its id in `known_ids`, or twice in `events`)
    is not appended again, so a redelivery never forks the chain.
    """
    links: list[Link] = []
    seen = set(known_ids)
    for event in events:
        event_id = str(event["event_id"])
        if event_id in seen:
            continue
        seen.add(event_id)
        text = canonical(event)
        link = Link(head.seq + 1, event_id, text, head.hash, link_hash(head.hash, text))
        links.append(link)
        head = ChainHead(link.seq, link.hash)
    return head, links


class Problem(StrEnum):
    CHANGED = "changed"  # the event (or its stored hash) is not what was appended
    REMOVED = "removed"  # a link's predecessor, or the chain's tail, is gone
    REORDERED = "reordered"  # a link's predecessor exists but is not the link before it


@dataclass(frozen=True)
class Finding:
    problem: Problem
    seq: int
    event_id: str | None
    detail: str


def verify(links: Sequence[Link], head: ChainHead | None = None) -> list[Finding]:
    """Every problem in `links` (sorted by seq), checked against the recorded `head`."""
    findings: list[Finding] = []
    hashes = {link.hash for link in links}
    previous = ChainHead()
    for link in links:
        if link_hash(link.prev_hash, link.canonical) != link.hash:
            findings.append(Finding(Problem.CHANGED, link.seq, link.event_id, "hash mismatch"))
        elif link.prev_hash != previous.hash:
            findings.append(_misplaced(link, previous, hashes))
        if link.seq != previous.seq + 1:
            findings.append(
                Finding(
                    Problem.REMOVED,
                    link.seq,
                    link.event_id,
                    f"sequence jumps from {previous.seq} to {link.seq}",
                )
            )
        previous = ChainHead(link.seq, link.hash)
    if head is not None and (head.seq, head.hash) != (previous.seq, previous.hash):
        findings.append(_head_mismatch(head, previous, hashes))
    return findings


def _misplaced(link: Link, previous: ChainHead, hashes: set[str]) -> Finding:
    """Why a link does not follow the one before it."""
    if link.prev_hash in hashes or link.prev_hash == GENESIS:
        return Finding(
            Problem.REORDERED, link.seq, link.event_id, "its predecessor is elsewhere in the chain"
        )
    if link.seq == previous.seq + 1:
        # The link before it is in place but is not the one this link recorded: it was
        # changed and its hash recomputed to hide it.
        return Finding(
            Problem.CHANGED,
            previous.seq,
            None,
            f"its hash is not the one link {link.seq} recorded (re-hashed after a change)",
        )
    return Finding(Problem.REMOVED, link.seq, link.event_id, "its predecessor is missing")


def _head_mismatch(head: ChainHead, last: ChainHead, hashes: set[str]) -> Finding:
    """The recorded head (updated with every append) disagrees with the last stored link."""
    if head.seq > last.seq:
        detail = f"the chain ends at seq {last.seq}, its head says {head.seq}"
        return Finding(Problem.REMOVED, head.seq, None, detail)
    if head.seq < last.seq:
        detail = f"links after the recorded head (seq {head.seq}) were added outside the flow"
        return Finding(Problem.CHANGED, last.seq, None, detail)
    if head.hash in hashes:
        return Finding(Problem.REORDERED, last.seq, None, "the head's link is not the last one")
    return Finding(Problem.CHANGED, last.seq, None, "the last link's hash is not the head's")
