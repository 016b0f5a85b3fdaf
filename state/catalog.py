"""The state pages the gateway can read, derived from the flow specs (`flows/catalog.py`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from flows.catalog import flow_specs
from flows.spec import FlowSpec, StatePage, TableSpec
from processors.keys import KeyRule, id_field
from soma.settings import Settings


@dataclass(frozen=True)
class PageRoute:
    """One readable state page: which flow keeps it and how a caller's id becomes its key."""

    route: str  # gateway path segment: /v1/state/<route>/{id}
    page: StatePage
    flow: FlowSpec

    @property
    def id_field(self) -> str:
        """What the id names in answers (`session_id`, `run_id`, ...)."""
        return id_field(self.page.key_rule)

    @property
    def table(self) -> TableSpec[Any]:
        return self.flow.table(self.page.table)

    def group(self, settings: Settings) -> str:
        """The consumer group whose members own the page's partitions."""
        return f"{settings.topic_prefix}{self.flow.app_id}"

    @property
    def source(self) -> str:
        """The registry topic whose partitions decide ownership (co-partitioned with tables)."""
        return self.flow.sources[0]

    @property
    def key_rule(self) -> KeyRule:
        return self.page.key_rule


@functools.cache
def all_pages() -> dict[str, PageRoute]:
    """Every state page by name, public or not."""
    return {
        page.name: PageRoute(page.name, page, flow)
        for flow in flow_specs()
        for page in flow.state_pages
    }


@functools.cache
def page_routes() -> dict[str, PageRoute]:
    """Every route segment of the gateway's state API (public pages and their aliases)."""
    routes: dict[str, PageRoute] = {}
    for flow in flow_specs():
        for page in flow.state_pages:
            if not page.public:
                continue
            for route in (page.name, *page.aliases):
                if route in routes:
                    raise ValueError(f"state route {route!r} is declared twice")
                routes[route] = PageRoute(route, page, flow)
    return routes
