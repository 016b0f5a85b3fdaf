"""librdkafka settings the plane's own consumers share: a bounded pre-fetch queue."""

from __future__ import annotations

from typing import Any

from soma.settings import Settings

# Records per partition librdkafka tries to keep pre-fetched (its default: 100,000). The plane's
# consumers read a few hundred records per poll (the lag sampler 200 per partition, a hand-over
# tail one batch), so 1,000 keeps them fed without holding a partition's backlog in memory.
CONSUMER_QUEUE_MIN_MESSAGES = 1000


def consumer_queue_bounds(settings: Settings) -> dict[str, Any]:
    """The pre-fetch bounds of a confluent-kafka consumer: fetching pauses once they are met."""
    return {
        "queued.max.messages.kbytes": settings.consumer_queue_max_kbytes,
        "queued.min.messages": CONSUMER_QUEUE_MIN_MESSAGES,
    }
