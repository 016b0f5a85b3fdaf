"""Hostile request bodies from the edge review (issue 6), each with the refusal it must get."""

from __future__ import annotations

from dataclasses import dataclass

SESSION = "/v1/session/message"
REMEMBER = "/v1/memory/remember"
TOOL_REQUESTS = "/v1/events/tool.requests"
INBOUND = "/v1/events/conversation.inbound"
MILLION = b",".join([b"1"] * 1_040_000)  # just under the 2 MiB body limit


@dataclass(frozen=True)
class Hostile:
    """A body a client should never get a 5xx for: the 4xx it gets, naming field and rule."""

    name: str
    path: str
    body: bytes
    status: int
    field: str | None  # None: only the rule is asserted (a very long pointer)
    rule: str | None


def _nested(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


CASES = (
    Hostile("surrogate", SESSION, b'{"message":"a\\ud800b"}', 422, "/message", "unicode"),
    Hostile(
        "surrogate_id", SESSION, b'{"message":"a","session_id":"\\udc00"}', 422,
        "/session_id", "unicode",
    ),
    Hostile(
        "surrogate_key", SESSION, b'{"message":"a","metadata":{"\\ud800":1}}', 422,
        "/metadata/\\ud800", "unicode",
    ),
    Hostile(
        "surrogate_content", REMEMBER, b'{"payload":{"a":1},"content":"\\ud800"}', 422,
        "/content", "unicode",
    ),
    Hostile(
        "uint64_overflow", SESSION, b'{"message":"a","metadata":{"x":18446744073709551616}}', 422,
        "/metadata/x", "maximum",
    ),
    Hostile(
        "int64_underflow", TOOL_REQUESTS,
        b'{"session_id":"s","tool_name":"t","metadata":{},"args":{"n":-18446744073709551616}}',
        422, "/args/n", "minimum",
    ),
    Hostile("nan_payload", REMEMBER, b'{"payload":{"x":NaN}}', 422, "/payload/x", "finite"),
    Hostile(
        "infinity_metadata", SESSION, b'{"message":"a","metadata":{"x":Infinity}}', 422,
        "/metadata/x", "finite",
    ),
    Hostile(
        "nested_300", SESSION, b'{"message":"a","metadata":{"x":' + _nested(300) + b"}}", 422,
        None, "maxDepth",
    ),
    Hostile(
        "nested_10000", SESSION, b'{"message":"a","metadata":' + _nested(10_000) + b"}", 422,
        "/", "maxDepth",
    ),
    Hostile(
        "nul_in_session", SESSION, b'{"message":"a","session_id":"a\\u0000b"}', 422,
        "/session_id", "pattern",
    ),
    Hostile(
        "empty_session", SESSION, b'{"message":"a","session_id":""}', 422,
        "/session_id", "minLength",
    ),
    Hostile(
        "empty_namespace", REMEMBER, b'{"payload":{"a":1},"namespace":""}', 422,
        "/namespace", "minLength",
    ),
    Hostile(
        "nul_in_run", "/v1/events/agent.runs.v1", b'{"run_id":"r\\u0000","status":"started"}',
        422, "/run_id", "pattern",
    ),
    Hostile(
        "million_attachments_session", SESSION,
        b'{"message":"m","attachments":[' + MILLION + b"]}", 422, "/attachments", "maxItems",
    ),
    Hostile(
        "million_attachments_event", INBOUND,
        b'{"session_id":"s","role":"user","message":"m","attachments":[' + MILLION + b"]}",
        422, "/attachments", "maxItems",
    ),
    Hostile(
        "million_numbers_one_too_big", SESSION,
        b'{"message":"m","metadata":{"a":[' + MILLION + b',99999999999999999999]}}', 422,
        "/metadata/a/1040000", "maximum",
    ),
    Hostile("not_json", SESSION, b'{"message": "unterminated', 400, None, None),
)  # fmt: skip
