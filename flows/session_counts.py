"""Always-on flow: count conversation events per `tenant/session_id` in a changelog-backed table."""

from __future__ import annotations

from collections.abc import Sequence

from flows.spec import BatchResult, FlowContext, FlowSpec, StatePage, TableSpec
from processors.intake import Event
from processors.keys import KeyRule
from processors.session_counts import EMPTY, SessionCount, fold_batch


def count_sessions(events: Sequence[Event], ctx: FlowContext) -> BatchResult:
    """Fold the batch into the counts; replayed offsets are skipped by the fold."""
    counts = ctx.table("session_counts")
    folded = fold_batch(
        {event.key: counts.get(event.key) for event in events},
        [(event.key, event.offset) for event in events],
    )
    return BatchResult(writes={"session_counts": folded})


SPEC = FlowSpec(
    name="session-counts",
    app_id="soma-session-counts",
    description="events per tenant/session of conversation.inbound, exactly once in effect",
    sources=("conversation.inbound",),
    handler=count_sessions,
    tables=(TableSpec("session_counts", SessionCount.to_dict, SessionCount.from_dict, EMPTY),),
    state_pages=(
        StatePage(
            "session-counts",
            table="session_counts",
            key_rule=KeyRule.TENANT_SESSION,
            summary="Events counted for a session",
            aliases=("session-events",),
        ),
    ),
)
