"""A loopback fake of IMS, Flow Service, the I/O Events journal and registration API.

For the tests and `make demo` only: it listens on 127.0.0.1 and the service never imports it.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiMapping

from exporter.adobe import fake_documents as documents

IMS_PATH = "/ims/token/v3"
FLOW_SERVICE = "/data/foundation/flowservice"
# How long a hanging answer waits at most; close() releases it at once.
HANG_BOUND = 30.0

Route = Literal["ims", "flows", "flow", "connection_spec", "runs", "registration", "journal"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Gateway error bodies (protocol notes §13).
_TOKEN_MISSING = {"error_code": "403010", "message": "Oauth token is missing."}
_TOKEN_INVALID = {"error_code": "401013", "message": "Oauth token is not valid"}
_API_KEY_INVALID = {"error_code": "403003", "message": "Api Key is invalid"}
_ORG_MISSING = {"error_code": "400003", "message": "Missing organization header"}
_PROFILE_INVALID = {"error_code": "403025", "message": "Profile is not valid"}
_SEEK = re.compile(r"-P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?")


@dataclass(frozen=True)
class Answer:
    """A scripted answer to the next request of a route; status None: the normal answer."""

    status: int | None = None
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hang: bool = False
    drop: bool = False
    # Send the body without Content-Length (chunked), so only reading it shows its size.
    chunked: bool = False

    @classmethod
    def json(cls, status: int, document: Any, **headers: str) -> Answer:
        """A JSON answer with this status."""
        merged = {"Content-Type": "application/json", **headers}
        return cls(status, json.dumps(document).encode(), merged)

    @classmethod
    def throttled(cls, retry_after: str | None = None) -> Answer:
        """429, with Retry-After when given (seconds or an HTTP date)."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return cls(429, b'{"error_code":"429050","message":"Too many requests"}', headers)


UNAUTHORIZED = Answer.json(401, _TOKEN_INVALID)
SERVER_ERROR = Answer.json(503, {"error_code": "1103-503", "message": "Service unavailable"})
HANG = Answer(hang=True)
DROP = Answer(drop=True)


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received."""

    route: Route
    method: str
    path: str
    query: MultiMapping[str]
    headers: CIMultiDictProxy[str]
    form: MultiDict[str] | None
    # When it arrived (time.monotonic), for tests of pacing and back-off.
    received: float = field(default_factory=time.monotonic)


@dataclass
class JournalEntry:
    """One event in the journal at a position."""

    position: str
    event: dict[str, Any]
    at: float


class FakeAdobe:
    """The Adobe APIs on one 127.0.0.1 port; tests set its data and script its failures."""

    def __init__(
        self,
        *,
        client_id: str = "fake-client-id",
        client_secret: str = "fake-secret-Zq8vN3xK",  # noqa: S107 - the fake's own secret
        scopes: Sequence[str] = ("openid", "AdobeID", "read_organizations", "adobeio_api"),
        org_id: str = "FAKE0RG@AdobeOrg",
        expires_in: float = 86399,
        page_size: int = 2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.scopes = set(scopes)
        self.org_id = org_id
        self.expires_in = expires_in
        self.page_size = page_size
        self.clock = clock
        self.flows: dict[str, list[dict[str, Any]]] = {}  # by sandbox
        self.runs: dict[str, list[dict[str, Any]]] = {}  # by sandbox
        self.connection_specs: dict[str, dict[str, Any]] = {}
        self.registrations: dict[str, dict[str, Any]] = {}  # by resource path
        self.journal: list[JournalEntry] = []
        # Position -> index in `journal`, kept by add_journal_events: `since` finds its place
        # without a scan (a 100 000-event journal read page by page would be quadratic).
        self._journal_index: dict[str, int] = {}
        self.journal_expired = 0  # this many oldest entries are gone (410 for their positions)
        # 204 at the journal's end: Retry-After seconds or an HTTP date; None sends none.
        self.journal_retry_after: str | None = "10"
        self.journal_ids = ("23294", "fake-credential-id", "d1c2b3a4-0000-4000-8000-000000000001")
        self.requests: list[RecordedRequest] = []
        self.tokens_issued = 0
        self._tokens: dict[str, float] = {}  # token -> expires at
        self._scripts: dict[Route, deque[Answer]] = {}
        self._continuations: dict[str, int] = {}
        self._released = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> None:
        """Listen on 127.0.0.1, on a port the system picks."""
        app = web.Application()
        add = app.router.add_route
        add("POST", IMS_PATH, self._serve("ims", self._ims))
        add("GET", f"{FLOW_SERVICE}/flows", self._serve("flows", self._flows))
        add("GET", f"{FLOW_SERVICE}/flows/{{flow_id}}", self._serve("flow", self._flow))
        spec = self._serve("connection_spec", self._connection_spec)
        add("GET", f"{FLOW_SERVICE}/connectionSpecs/{{spec_id}}", spec)
        add("GET", f"{FLOW_SERVICE}/runs", self._serve("runs", self._runs))
        # The next link may use another path prefix (protocol notes §9.3).
        journal = "/{prefix:events|events-fast}/organizations/{consumer}/integrations/{cred}/{reg}"
        add("GET", journal, self._serve("journal", self._journal))
        registration = "/events/{consumer}/{project}/{workspace}/registrations/{registration}"
        add("GET", registration, self._serve("registration", self._registration))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"

    async def close(self) -> None:
        """Release hanging answers and stop listening."""
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def ims_url(self) -> str:
        """The token endpoint, as AEP_EXPORTER_IMS_URL takes it."""
        return self.base_url + IMS_PATH

    @property
    def flow_service_url(self) -> str:
        """The Flow Service base (AEP_EXPORTER_PLATFORM_URL plus its path)."""
        return self.base_url + FLOW_SERVICE

    @property
    def journal_url(self) -> str:
        """The registration's journal URL, as AEP_EXPORTER_JOURNAL_URL takes it."""
        consumer, credential, registration = self.journal_ids
        path = f"/events/organizations/{consumer}/integrations/{credential}/{registration}"
        return self.base_url + path

    def exporter_settings(self) -> dict[str, str]:
        """The settings that point an exporter's IMS credentials and Flow Service at the fake."""
        return {
            "AEP_EXPORTER_IMS_URL": self.ims_url,
            "AEP_EXPORTER_IMS_CLIENT_ID": self.client_id,
            "AEP_EXPORTER_IMS_CLIENT_SECRET": self.client_secret,
            "AEP_EXPORTER_IMS_SCOPES": ",".join(sorted(self.scopes)),
            "AEP_EXPORTER_IMS_ORG_ID": self.org_id,
            "AEP_EXPORTER_PLATFORM_URL": self.base_url,
        }

    def add_registration(self, document: dict[str, Any]) -> str:
        """Serve a registration document (see documents.registration); returns its URL."""
        ids = [document[key] for key in ("consumer_id", "project_id", "workspace_id")]
        path = "/events/{}/{}/{}/registrations/{}".format(*ids, document["registration_id"])
        self.registrations[path] = document
        return self.base_url + path

    def add_journal_events(self, *events: dict[str, Any], at: float | None = None) -> list[str]:
        """Append events to the journal; returns their positions."""
        positions = []
        for event in events:
            number = len(self.journal) + 1
            position = f"moose:{uuid.UUID(int=number)}:{uuid.UUID(int=0x5EED0000 + number)}"
            self._journal_index[position] = len(self.journal)
            self.journal.append(JournalEntry(position, event, self.clock() if at is None else at))
            positions.append(position)
        return positions

    def script(self, route: Route, *answers: Answer) -> None:
        """Answer the next requests of a route like this, one answer each, in order."""
        self._scripts.setdefault(route, deque()).extend(answers)

    def requests_to(self, route: Route) -> list[RecordedRequest]:
        """The requests a route received, in order."""
        return [request for request in self.requests if request.route == route]

    def revoke_tokens(self) -> None:
        """Forget every issued token: the APIs answer 401 to them from now on."""
        self._tokens.clear()

    def _serve(self, route: Route, handler: Handler) -> Handler:
        async def serve(request: web.Request) -> web.StreamResponse:
            form = await request.post() if request.method == "POST" else None
            self.requests.append(
                RecordedRequest(
                    route,
                    request.method,
                    request.path,
                    request.query,
                    request.headers,
                    MultiDict((k, str(v)) for k, v in form.items()) if form is not None else None,
                )
            )
            queue = self._scripts.get(route)
            if queue:
                answer = queue.popleft()
                if answer.delay:
                    await asyncio.sleep(answer.delay)
                if answer.hang:
                    async with asyncio.timeout(HANG_BOUND):
                        await self._released.wait()
                    return web.Response(status=503)
                if answer.drop:
                    assert request.transport is not None
                    request.transport.close()
                    return web.Response(status=503)  # never sent: the connection is gone
                if answer.status is not None:
                    return await _play(request, answer)
            refusal = self._authorize(route, request)
            return refusal if refusal is not None else await handler(request)

        return serve

    def _authorize(self, route: Route, request: web.Request) -> web.Response | None:
        if route == "ims":
            return None
        authorization = request.headers.get("Authorization", "")
        if not authorization.startswith("Bearer "):
            return web.json_response(_TOKEN_MISSING, status=403)
        expires_at = self._tokens.get(authorization.removeprefix("Bearer "))
        if expires_at is None or self.clock() >= expires_at:
            return web.json_response(_TOKEN_INVALID, status=401)
        if request.headers.get("x-api-key") != self.client_id:
            return web.json_response(_API_KEY_INVALID, status=403)
        # Flow Service is an AEP API; the journal and registrations are I/O Events (§7).
        flow_service = route in ("flows", "flow", "connection_spec", "runs")
        org = request.headers.get("x-gw-ims-org-id" if flow_service else "x-ims-org-id")
        if org is None:
            return web.json_response(_ORG_MISSING, status=400)
        if org != self.org_id:
            return web.json_response(_PROFILE_INVALID, status=403)
        if flow_service and not request.headers.get("x-sandbox-name"):
            return _problem(400, "FLOW-1102-400", "x-sandbox-name header is missing")
        return None

    async def _ims(self, request: web.Request) -> web.StreamResponse:
        # protocol notes §8.1: a form POST with all four parameters.
        if request.content_type != "application/x-www-form-urlencoded":
            return _oauth_error(400, "invalid_request", "form body expected")
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "use client_credentials")
        credentials = (form.get("client_id"), form.get("client_secret"))
        if credentials != (self.client_id, self.client_secret):
            return _oauth_error(401, "invalid_client", "invalid client_id or client_secret")
        scope = str(form.get("scope", ""))
        wanted = {part for part in scope.split(",") if part}
        if not wanted or not wanted <= self.scopes:
            return _oauth_error(400, "invalid_scope", "invalid scope")
        self.tokens_issued += 1
        token = f"fake-ims-{self.tokens_issued}-{secrets.token_urlsafe(12)}"
        self._tokens[token] = self.clock() + self.expires_in
        return web.json_response(
            {"access_token": token, "token_type": "bearer", "expires_in": self.expires_in}
        )

    async def _flows(self, request: web.Request) -> web.StreamResponse:
        items = self.flows.get(request.headers["x-sandbox-name"], [])
        if request.query.get("count") == "true":
            if "limit" in request.query:
                return _problem(400, "FLOW-1401-400", "limit and count cannot be given together")
            return _filtered(request, items, lambda found: web.json_response({"count": len(found)}))
        return _filtered(request, items, lambda found: self._page(request, found, "/flows"))

    async def _runs(self, request: web.Request) -> web.StreamResponse:
        items = self.runs.get(request.headers["x-sandbox-name"], [])
        return _filtered(request, items, lambda found: self._page(request, found, "/runs"))

    async def _flow(self, request: web.Request) -> web.StreamResponse:
        flow_id = request.match_info["flow_id"]
        for item in self.flows.get(request.headers["x-sandbox-name"], []):
            if item["id"] == flow_id:
                return web.json_response({"items": [item]})
        return _problem(404, "FLOW-1439-404", "Resource not found", id=flow_id)

    async def _connection_spec(self, request: web.Request) -> web.StreamResponse:
        spec = self.connection_specs.get(request.match_info["spec_id"])
        if spec is None:
            return _problem(404, "FLOW-1439-404", "Resource not found")
        return web.json_response({"items": [spec]})

    def _page(self, request: web.Request, items: list[dict[str, Any]], path: str) -> web.Response:
        # `_links.next.href` is relative to the Flow Service base and carries only the
        # continuation token: a client must re-send its filters (protocol notes §11.2).
        token = request.query.get("continuationToken")
        start = 0
        if token is not None:
            if token not in self._continuations:
                return _problem(400, "FLOW-1400-400", "invalid continuationToken")
            start = self._continuations[token]
        limit = int(request.query.get("limit", self.page_size))
        page = items[start : start + limit]
        links: dict[str, Any] = {}
        if start + limit < len(items):
            following = secrets.token_urlsafe(9)
            self._continuations[following] = start + limit
            links["next"] = {"href": f"{path}?continuationToken={following}"}
        return web.json_response({"items": page, "_links": links, "count": len(page)})

    async def _registration(self, request: web.Request) -> web.StreamResponse:
        document = self.registrations.get(request.path)
        if document is None:
            return web.json_response({"reason": "Registration does not exist"}, status=404)
        return web.json_response(document, content_type="application/hal+json")

    async def _journal(self, request: web.Request) -> web.StreamResponse:
        ids = tuple(request.match_info[key] for key in ("consumer", "cred", "reg"))
        if ids != self.journal_ids:
            return web.json_response({"reason": "journal does not exist"}, status=404)
        query = request.query
        start = self.journal_expired
        if "since" in query:
            if "seek" in query:
                return web.json_response(
                    {"reason": "since and seek exclude each other"}, status=400
                )
            since = query["since"]
            index = self._journal_index.get(since, -1)
            if index < self.journal_expired:
                # Plain text, no Link header (protocol notes §9.3); unknown positions alike.
                return web.Response(status=410, text=f"Events at position {since} have expired.")
            start = index + 1
        elif "seek" in query:
            match = _SEEK.fullmatch(query["seek"])
            if match is None:
                return web.json_response({"reason": "seek must be like -PT2H"}, status=400)
            days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
            cutoff = self.clock() - (((days * 24 + hours) * 60 + minutes) * 60 + seconds)
            later = (i for i in range(start, len(self.journal)) if self.journal[i].at >= cutoff)
            start = next(later, len(self.journal))
        elif query.get("latest") == "true":
            start = len(self.journal)
        limit = int(query.get("limit", self.page_size))
        page = self.journal[start : start + limit]
        # `limit` is kept in next links (protocol notes §9.2).
        suffix = f"&limit={query['limit']}" if "limit" in query else ""
        base = request.path.replace("/events-fast/", "/events/", 1)
        headers: CIMultiDict[str] = CIMultiDict()
        headers.add("Link", f'<{base}>; rel="events"')
        if not page:
            # At the end: next is where this request asked, or after the last event (latest).
            last = self.journal[start - 1].position if start > self.journal_expired else None
            following = f"{base}?since={last}{suffix}" if last is not None else base
            validate = following.replace("/events/", "/events-validate/", 1)
            headers.add("Link", f'<{following}>; rel="next"')
            headers.add("Link", f'<{validate}>; rel="validate"')
            # Without any query (empty journal) the documented 204 carries no Retry-After.
            if query and self.journal_retry_after is not None:
                headers["Retry-After"] = self.journal_retry_after
            return web.Response(status=204, headers=headers)
        fast = base.replace("/events/", "/events-fast/", 1)
        headers.add("Link", f'<{fast}?since={page[-1].position}{suffix}>; rel="next"')
        body = {
            "events": [{"position": e.position, "event": e.event} for e in page],
            "_page": {"last": page[-1].position, "count": len(page)},
        }
        return web.json_response(body, headers=headers)


async def _play(request: web.Request, answer: Answer) -> web.StreamResponse:
    assert answer.status is not None
    if not answer.chunked:
        return web.Response(status=answer.status, body=answer.body, headers=answer.headers)
    response = web.StreamResponse(status=answer.status, headers=answer.headers)
    response.enable_chunked_encoding()
    await response.prepare(request)
    for offset in range(0, len(answer.body), 65536):
        await response.write(answer.body[offset : offset + 65536])
    await response.write_eof()
    return response


def _filtered(
    request: web.Request,
    items: list[dict[str, Any]],
    answer: Callable[[list[dict[str, Any]]], web.Response],
) -> web.Response:
    try:
        found = documents.select(items, request.query.getall("property", []))
    except ValueError as exc:
        return _problem(400, "FLOW-1431-400", str(exc))
    return answer(found)


def _problem(status: int, code: str, title: str, **report: str) -> web.Response:
    # RFC 7807-style Flow Service error body (protocol notes §11.1).
    body = {
        "type": f"https://ns.adobe.com/aep/errors/{code}",
        "title": title,
        "status": status,
        "report": {"detailed-message": title, **report},
    }
    return web.json_response(body, status=status)


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    # IMS answers OAuth-style errors (protocol notes §8.1).
    return web.json_response({"error": error, "error_description": description}, status=status)
