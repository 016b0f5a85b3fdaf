"""Read one key of a flow's state: find the worker that owns its partition and ask it."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from processors.keys import KeyRule, record_key
from processors.partitioning import partition_for
from processors.scan import ScanQuery, encode_cursor, merge_pages
from soma.secrets import INTERNAL_HEADER, internal_token
from soma.settings import Settings
from state.catalog import PageRoute, all_pages, page_routes
from state.errors import StateUnavailable, UnknownStatePage
from state.locator import GroupLocator
from topics.registry import TopicRegistry

WORKER_TIMEOUT_S = 1.0


class StateReader:
    """The gateway's one way into flow state; shares one locator and one HTTP client."""

    def __init__(self, settings: Settings, locator: GroupLocator | None = None) -> None:
        self.settings = settings
        self.locator = locator or GroupLocator(settings)
        self._registry = TopicRegistry(settings.topic_prefix)
        self._http = httpx.AsyncClient(
            timeout=WORKER_TIMEOUT_S,
            headers={INTERNAL_HEADER: internal_token(settings.stack_dir)},
        )

    async def aclose(self) -> None:
        await self._http.aclose()
        await self.locator.aclose()

    async def read(
        self, route: str, tenant: str, ident: str, *, group: str | None = None
    ) -> dict[str, Any]:
        """The value of the caller's key on a state page, as its owning worker answers it.

        The key is built from the caller's tenant, so nobody can name another tenant's key.
        Returns {"tenant", <id field>, "partition", **value}; a key never written answers the
        table's default. Raises UnknownStatePage, StateUnavailable (retry later: no owner,
        rebalancing, restoring, broker or worker unreachable), or processors.keys.KeyError_
        (a ValueError) for an id that cannot form a key.
        """
        try:
            page = page_routes()[route]
        except KeyError:
            raise UnknownStatePage(route) from None
        key = _key(page, tenant, ident)
        partition, value = await self._value(page, key, group)
        answer: dict[str, Any] = {"tenant": tenant}
        if page.key_rule is not KeyRule.TENANT:
            answer[page.id_field] = ident
        answer["partition"] = partition
        answer.update(value)
        return answer

    async def get(self, page_name: str, key: str) -> dict[str, Any]:
        """One row of any page by its table key, as its owner answers it (no tenant scoping:
        the caller checks the row's tenant)."""
        _, value = await self._value(_page(page_name), key, None)
        return value

    async def scan(
        self, page_name: str, query: ScanQuery, *, group: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of rows of every partition, newest first, and the next page's cursor.

        Every partition's owner is asked for its newest `limit + 1` matching rows; the pages
        are merged. A partition without an owner makes the answer StateUnavailable: a list
        that silently misses a partition would look complete.
        """
        page = _page(page_name)
        topic = self._registry.get(page.source).name
        group = group or page.group(self.settings)
        partitions = await self.locator.partitions(topic)
        owners = {await self.locator.owner_url(group, topic, p) for p in range(partitions)}
        params: dict[str, str] = {"limit": str(query.limit + 1)}
        params.update({f"eq.{k}": v for k, v in query.equals.items()})
        if query.since:
            params["since"] = query.since
        if query.until:
            params["until"] = query.until
        if query.after:
            params["after"] = encode_cursor(query.after)
        pages, covered = [], set()
        for url in sorted(owners):
            body = await self._fetch(f"{url}/scan/{page.page.name}", params)
            pages.append(body["rows"])
            covered.update(body["partitions"])
        if covered != set(range(partitions)):
            self.locator.forget(group)
            raise StateUnavailable(
                f"partitions {sorted(set(range(partitions)) - covered)} are moving",
                reason="moved",
                retry_after_s=1,
            )
        return merge_pages(pages, query)

    async def ask_owners(
        self,
        group: str,
        topic: str,
        path: str,
        params: dict[str, str] | None = None,
        *,
        post: bool = False,
    ) -> list[dict[str, Any]]:
        """The answer of `path` from every worker of `group` owning a partition of `topic`."""
        partitions = await self.locator.partitions(topic)
        owners = {await self.locator.owner_url(group, topic, p) for p in range(partitions)}
        return [
            await self._fetch(f"{url}{path}", params or {}, post=post) for url in sorted(owners)
        ]

    async def _value(
        self, page: PageRoute, key: str, group: str | None
    ) -> tuple[int, dict[str, Any]]:
        topic = self._registry.get(page.source).name
        group = group or page.group(self.settings)
        partition_key = page.table.partition_key(key)
        partition = partition_for(partition_key.encode(), await self.locator.partitions(topic))
        url = await self.locator.owner_url(group, topic, partition)
        body = await self._ask(url, page, key)
        if body is None:
            self.locator.forget(group)  # the cached assignment is stale; re-read next time
            raise StateUnavailable(
                f"{topic}[{partition}] moved to another worker", reason="moved", retry_after_s=1
            )
        return partition, {k: v for k, v in body.items() if k not in ("key", "partition", "owner")}

    async def _fetch(
        self, url: str, params: dict[str, str], *, post: bool = False
    ) -> dict[str, Any]:
        try:
            if post:
                response = await self._http.post(url, params=params)
            else:
                response = await self._http.get(url, params=params)
        except httpx.HTTPError as exc:
            raise StateUnavailable(
                f"a worker is unreachable: {exc!r}", reason="unreachable", retry_after_s=2
            ) from exc
        if response.status_code not in (200, 202):
            raise StateUnavailable(
                f"a worker answered {response.status_code}", reason="worker", retry_after_s=1
            )
        body: dict[str, Any] = response.json()
        return body

    async def _ask(self, url: str, page: PageRoute, key: str) -> dict[str, Any] | None:
        """The worker's answer, None when it says it does not own the key."""
        try:
            response = await self._http.get(f"{url}/state/{page.page.name}/{quote(key, safe='')}")
        except httpx.HTTPError as exc:
            raise StateUnavailable(
                f"the worker owning the key is unreachable: {exc!r}",
                reason="unreachable",
                retry_after_s=2,
            ) from exc
        if response.status_code == 421:
            return None
        if response.status_code != 200:
            retry = response.headers.get("Retry-After", "1")
            raise StateUnavailable(
                f"the worker owning the key answered {response.status_code}",
                reason="restoring" if response.status_code == 503 else "worker",
                retry_after_s=int(retry) if retry.isdigit() else 1,
            )
        body: dict[str, Any] = response.json()
        return body if body.get("owner") is True else None


def _page(name: str) -> PageRoute:
    try:
        return all_pages()[name]
    except KeyError:
        raise UnknownStatePage(name) from None


def _key(page: PageRoute, tenant: str, ident: str) -> str:
    if page.key_rule is KeyRule.TENANT:
        return record_key(KeyRule.TENANT, {}, tenant)
    return record_key(page.key_rule, {page.id_field: ident}, tenant)
