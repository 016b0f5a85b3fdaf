"""Always-on flow: index every dead letter of every DLQ topic, and apply operators' actions."""

from __future__ import annotations

from collections.abc import Sequence

from flows.spec import BatchResult, FlowContext, FlowSpec, StatePage, TableSpec
from processors.dlq_index import (
    DlqEntry,
    apply_action,
    entry_from_envelope,
    entry_partition_key,
    index_envelope,
)
from processors.intake import Event
from processors.keys import KeyRule
from topics.registry import dead_letter_topics

ACTIONS = "dlq.actions"


def index_dead_letters(events: Sequence[Event], ctx: FlowContext) -> BatchResult:
    """Envelopes become entries (first sighting wins); actions move an entry's status."""
    index = ctx.table("dlq_index")
    actions_topic = f"{ctx.settings.topic_prefix}{ACTIONS}"
    writes: dict[str, DlqEntry] = {}

    def current(entry_id: str) -> DlqEntry | None:
        found: DlqEntry | None = writes.get(entry_id) or index.get(entry_id)
        return found

    for event in events:
        if event.topic == actions_topic:
            entry = current(event.value["entry_id"])
            if entry is not None:  # an action on an entry never indexed here changes nothing
                writes[entry.entry_id] = apply_action(entry, event.value)
            continue
        new = entry_from_envelope(
            event.value,
            dlq_key=event.key,
            topic=event.topic,
            partition=event.partition,
            offset=event.offset,
        )
        writes[new.entry_id] = index_envelope(current(new.entry_id), new)
    return BatchResult(writes={"dlq_index": writes})


SPEC = FlowSpec(
    name="dlq-index",
    app_id="soma-dlq-index",
    description="every dead letter, listable and filterable, with its operator status",
    sources=(*dead_letter_topics(), ACTIONS),
    handler=index_dead_letters,
    tables=(
        TableSpec(
            "dlq_index",
            DlqEntry.to_dict,
            DlqEntry.from_dict,
            None,
            key_rule=KeyRule.ORIGINAL,
            partition_key=entry_partition_key,
        ),
    ),
    state_pages=(
        StatePage(
            "dlq-index",
            table="dlq_index",
            key_rule=KeyRule.ORIGINAL,
            summary="Dead letters, newest first",
            public=False,  # read by the admin API (gateway/routes/dlq.py), tenant-scoped there
            order_by="failed_at",
        ),
    ),
)
