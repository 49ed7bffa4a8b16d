"""Flow Service requests (protocol notes §11, §12): flows and runs listed page by page, one flow,
a spec name."""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

from yarl import URL

from exporter.adobe.client import AdobeApi, AdobeInvalidResponse, AdobeNotFound, RequestResult
from exporter.adobe.ims import TokenProvider
from exporter.normalize.values import FLOW_ID_LIMIT, NAME_LIMIT, clean_text, identifier
from exporter.records import FlowEnrichment

FLOW_SERVICE_PATH = "/data/foundation/flowservice"
# Source flows only; destination flows are not ours (protocol notes §11.2).
SOURCE_FLOWS = ("property", "inheritedAttributes.properties.isSourceFlow==true")
# A listing that needs more pages than this is refused rather than followed forever.
MAX_PAGES = 1000
STATE_LIMIT = 64
# Seconds per `scheduleParams.frequency` unit (protocol notes §11.3); `once` has no interval.
UNIT_SECONDS = {"minute": 60.0, "hour": 3600.0, "day": 86400.0, "week": 604800.0}
# The spec says integer, the docs send strings like "15" (protocol notes §11.3).
_INTERVAL_TEXT = re.compile(r"\d{1,9}")
_MAX_INTERVAL_UNITS = 1_000_000
# Flow and spec ids are UUIDs: anything else never becomes a path segment under our token.
_PATH_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")


def _items(data: Any) -> str | None:
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        return None
    return "no items list"


def _count(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if not _INTERVAL_TEXT.fullmatch(value.strip()):
            return None
        value = int(value.strip())
    if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
        return None
    if isinstance(value, int | float) and 0 < value <= _MAX_INTERVAL_UNITS:
        return float(value)
    return None


def expected_interval(schedule: Any) -> float | None:
    """Seconds between scheduled runs: `interval` times the `frequency` unit; None for `once`,
    streaming flows (no `scheduleParams`) and anything unparsable (protocol notes §11.3)."""
    if not isinstance(schedule, dict):
        return None
    frequency = schedule.get("frequency")
    unit = UNIT_SECONDS.get(frequency.strip().lower()) if isinstance(frequency, str) else None
    if unit is None:
        return None
    count = _count(schedule.get("interval"))
    return None if count is None else count * unit


def flow_id_of(item: Any) -> str | None:
    """The id of a flow document, if it is one the exporter can key on."""
    return identifier(item.get("id"), FLOW_ID_LIMIT) if isinstance(item, dict) else None


def source_spec_id(item: dict[str, Any]) -> str | None:
    """The connection spec id of the flow's source connection (protocol notes §11.1)."""
    inherited = item.get("inheritedAttributes")
    connections = inherited.get("sourceConnections") if isinstance(inherited, dict) else None
    if not isinstance(connections, list) or not connections:
        return None
    first = connections[0]
    spec = first.get("connectionSpec") if isinstance(first, dict) else None
    return identifier(spec.get("id"), FLOW_ID_LIMIT) if isinstance(spec, dict) else None


def enrichment_of(item: dict[str, Any], source: str | None) -> FlowEnrichment:
    """What the exporter keeps of a flow document: name, source name, state, interval."""
    return FlowEnrichment(
        name=clean_text(item.get("name"), NAME_LIMIT),
        source=source,
        state=clean_text(item.get("state"), STATE_LIMIT),
        expected_interval=expected_interval(item.get("scheduleParams")),
    )


class FlowService:
    """Flow Service under the platform URL, with the shared token (protocol notes §7, §11)."""

    def __init__(self, tokens: TokenProvider, platform_url: str) -> None:
        self._tokens = tokens
        self.base = URL(platform_url.rstrip("/") + FLOW_SERVICE_PATH)

    async def list_flows(
        self,
        sandbox: str,
        filters: Sequence[tuple[str, str]] = (SOURCE_FLOWS,),
        *,
        limit: int | None = None,
        pages: int = MAX_PAGES,
    ) -> AsyncIterator[list[Any]]:
        """The `items` of each page of GET /flows (see list_items)."""
        async for items in self.list_items("flows", sandbox, filters, limit=limit, pages=pages):
            yield items

    async def list_items(
        self,
        resource: str,
        sandbox: str,
        filters: Sequence[tuple[str, str]],
        *,
        limit: int | None = None,
        pages: int = MAX_PAGES,
    ) -> AsyncIterator[list[Any]]:
        """The `items` of each page of GET /flows or /runs, following `_links.next.href`
        (relative to the Flow Service base) and re-sending the filters with each continuation
        token (whether the link keeps them is UNCONFIRMED, protocol notes §11.2, §12.1)."""
        asked = list(filters) + ([("limit", str(limit))] if limit is not None else [])
        target: URL | None = self.base / resource
        seen: set[URL] = set()
        while target is not None:
            if len(seen) >= pages:
                raise self._invalid(f"GET /{resource}: more than {pages} pages")
            seen.add(target)
            query = list(target.query.items())
            params = query + [pair for pair in asked if pair not in query]
            response = await self._tokens.request(
                AdobeApi.FLOW_SERVICE,
                "GET",
                target.with_query(None),
                sandbox=sandbox,
                params=params,
                check=_items,
            )
            yield response.data["items"]
            if limit is not None:
                return
            target = self._next(response.data, resource)
            if target is not None and target in seen:
                raise self._invalid(f"GET /{resource}: the next link repeats a page")

    async def flow(self, sandbox: str, flow_id: str) -> dict[str, Any] | None:
        """GET /flows/{id}: the flow, or None when Flow Service does not know it (404; also
        for an id that cannot be a Flow Service id, without asking)."""
        if not _PATH_ID.fullmatch(flow_id):
            return None
        try:
            response = await self._tokens.request(
                AdobeApi.FLOW_SERVICE, "GET", self.base / "flows" / flow_id, sandbox=sandbox
            )
        except AdobeNotFound:
            return None
        return _first_item(response.data)

    async def connection_spec_name(self, sandbox: str, spec_id: str) -> str | None:
        """GET /connectionSpecs/{id}: the source type's name ("Amazon S3"); None for a 404."""
        if not _PATH_ID.fullmatch(spec_id):
            return None
        try:
            response = await self._tokens.request(
                AdobeApi.FLOW_SERVICE, "GET", self.base / "connectionSpecs" / spec_id,
                sandbox=sandbox,
            )  # fmt: skip
        except AdobeNotFound:
            return None
        item = _first_item(response.data)
        return clean_text(item.get("name"), NAME_LIMIT) if item is not None else None

    def _next(self, data: dict[str, Any], resource: str) -> URL | None:
        links = data.get("_links")
        following = links.get("next") if isinstance(links, dict) else None
        href = following.get("href") if isinstance(following, dict) else None
        if not isinstance(href, str) or not href.strip():
            return None  # absent or {} on the last page
        link = URL(href.strip())
        if link.is_absolute():
            # Only ever back to Flow Service itself: a token never goes anywhere else.
            if link.origin() != self.base.origin() or not link.path.startswith(self.base.path):
                raise self._invalid(f"GET /{resource}: the next link leaves Flow Service")
            return link
        if not link.path.startswith("/") or ".." in link.path.split("/"):
            raise self._invalid(f"GET /{resource}: the next link is not a path")
        # Relative to the Flow Service base; tolerate a link that already starts with it.
        path = link.path
        if not path.startswith(self.base.path + "/"):
            path = self.base.path + path
        return self.base.with_path(path).with_query(link.query)

    @staticmethod
    def _invalid(message: str) -> AdobeInvalidResponse:
        return AdobeInvalidResponse(
            message, api=AdobeApi.FLOW_SERVICE, result=RequestResult.INVALID
        )


def _first_item(data: Any) -> dict[str, Any] | None:
    # GET /flows/{id} and /connectionSpecs/{id} answer {"items": [{…}]} (protocol notes §11.1).
    items = data.get("items") if isinstance(data, dict) else None
    if isinstance(items, list) and items and isinstance(items[0], dict):
        return items[0]
    return None
