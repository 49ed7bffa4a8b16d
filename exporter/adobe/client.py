"""One hardened HTTP client for every Adobe API: timed, bounded, never redirected, classified."""

from __future__ import annotations

import asyncio
import email.utils
import enum
import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from types import TracebackType
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from exporter import __version__
from exporter.domain import ExporterError

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 30.0
# A journal page is capped at 1.5 MB (protocol notes §9.2); Flow Service pages are smaller.
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
# Of an error answer only this much is kept, for its error code; the status already classifies it.
ERROR_BODY_BYTES = 64 * 1024
_CHUNK_BYTES = 64 * 1024
# Adobe's error bodies name a code (`error_code`, IMS `error`, RFC 7807 `type`; protocol notes
# §13, §8.1, §11.1); only a code of this alphabet reaches an exception message.
_ERROR_CODE = re.compile(r"[A-Za-z0-9._:/-]{1,120}")
_DELTA_SECONDS = re.compile(r"\d{1,10}(\.\d{1,6})?")


class AdobeApi(enum.StrEnum):
    """`api` label of aep_exporter_adobe_requests_total."""

    IMS = "ims"
    FLOW_SERVICE = "flow_service"
    JOURNAL = "journal"
    REGISTRATION = "registration"


class RequestResult(enum.StrEnum):
    """`result` label of aep_exporter_adobe_requests_total: every request gets exactly one."""

    OK = "ok"
    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
    THROTTLED = "throttled"
    SERVER_ERROR = "server_error"
    NETWORK_ERROR = "network_error"
    INVALID = "invalid"


def classify_status(status: int) -> RequestResult:
    """The result label of an HTTP status (a redirect is never followed: invalid)."""
    if 200 <= status < 300:
        return RequestResult.OK
    if status in (401, 403):
        return RequestResult.UNAUTHORIZED
    if status == 404:
        return RequestResult.NOT_FOUND
    if status == 429:
        return RequestResult.THROTTLED
    if 500 <= status < 600:
        return RequestResult.SERVER_ERROR
    return RequestResult.INVALID


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Seconds a `Retry-After` value asks for (delta-seconds or an HTTP date); None if unusable."""
    # Both forms occur: the journal's 204 sends seconds, and Adobe's own helper accepts dates
    # too (protocol notes §9.3, §13).
    if value is None:
        return None
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # "-0000" parses naive; HTTP dates are GMT anyway
    seconds = when.timestamp() - now
    return max(0.0, seconds) if math.isfinite(seconds) else None


class AdobeError(ExporterError):
    """Base of every failure of an Adobe API request; `result` is how it was counted."""

    def __init__(
        self,
        message: str,
        *,
        api: AdobeApi,
        result: RequestResult,
        status: int | None = None,
        retry_after: float | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(message)
        self.api = api
        self.result = result
        self.status = status
        self.retry_after = retry_after
        # At most ERROR_BODY_BYTES of the answer; never part of the message.
        self.body = body


class AdobeNetworkError(AdobeError):
    """No answer: connection refused or reset, or no complete answer within the timeout."""


class AdobeInvalidResponse(AdobeError):
    """A success status whose body is too large or not JSON."""


class AdobeStatusError(AdobeError):
    """Adobe answered with a status that is not a success."""


class AdobeUnauthorized(AdobeStatusError):
    """401 or 403: the token, the API key or the org header was refused."""


class AdobeNotFound(AdobeStatusError):
    """404: the resource does not exist, or an access label hides it (protocol notes §11.1)."""


class AdobeThrottled(AdobeStatusError):
    """429: too many requests; `retry_after` says how long to wait, if Adobe said."""


class AdobeServerError(AdobeStatusError):
    """5xx: Adobe failed; worth retrying with back-off."""


class AdobeUnexpectedStatus(AdobeStatusError):
    """Any other status: 400, 410 (an expired journal position), a redirect, ..."""


_STATUS_ERRORS: dict[RequestResult, type[AdobeStatusError]] = {
    RequestResult.UNAUTHORIZED: AdobeUnauthorized,
    RequestResult.NOT_FOUND: AdobeNotFound,
    RequestResult.THROTTLED: AdobeThrottled,
    RequestResult.SERVER_ERROR: AdobeServerError,
    RequestResult.INVALID: AdobeUnexpectedStatus,
}


@dataclass(frozen=True, slots=True)
class AdobeResponse:
    """A successful (2xx) answer, its body read in full and decoded."""

    api: AdobeApi
    status: int
    url: URL
    headers: CIMultiDictProxy[str]
    # Raw and decoded body stay out of repr: an IMS answer holds a token.
    body: bytes = field(repr=False)
    # The decoded JSON; None for an empty body (a journal 204).
    data: Any = field(repr=False)
    retry_after: float | None
    # `Link` relations, resolved against the request URL (protocol notes §9.3).
    links: Mapping[str, URL]


def _ignore(api: AdobeApi, result: RequestResult) -> None:
    pass


def _checked(check: Callable[[Any], str | None], data: Any) -> str | None:
    # A check that trips over an unforeseen shape still classifies the answer, never crashes.
    try:
        return check(data)
    except (TypeError, KeyError, IndexError, AttributeError, ValueError) as exc:
        return f"shape check failed ({type(exc).__name__})"


def _error_code(body: bytes) -> str:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    if not isinstance(document, dict):
        return ""
    for key in ("error_code", "error", "type"):
        code = document.get(key)
        if isinstance(code, str | int) and _ERROR_CODE.fullmatch(str(code)):
            return f" ({code})"
    return ""


def _links(response: aiohttp.ClientResponse) -> dict[str, URL]:
    links: dict[str, URL] = {}
    try:
        for rel, link in response.links.items():
            target = link.get("url")
            if isinstance(target, URL):
                links.setdefault(rel, target)
    except ValueError:  # an unreadable Link header: no links, as if absent
        return {}
    return links


class AdobeClient:
    """The one HTTP client of every Adobe API request; counts each through `on_request`."""

    def __init__(
        self,
        *,
        on_request: Callable[[AdobeApi, RequestResult], None] = _ignore,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._on_request = on_request
        self._timeout = timeout
        self._max_body_bytes = max_body_bytes
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AdobeClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            # trust_env=False: no proxy or .netrc from the environment sees a token or a secret;
            # no cookies either, so no request depends on what an earlier one was told.
            self._session = aiohttp.ClientSession(
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                headers={"User-Agent": f"aep-flow-exporter/{__version__}"},
            )
        return self._session

    async def request(
        self,
        api: AdobeApi,
        method: str,
        url: str | URL,
        *,
        headers: Mapping[str, str] | None = None,
        params: Sequence[tuple[str, str]] | None = None,
        form: Mapping[str, str] | None = None,
        check: Callable[[Any], str | None] | None = None,
    ) -> AdobeResponse:
        """One request, counted once; an AdobeResponse for 2xx, else an AdobeError subclass.

        (aiohttp itself resends an idempotent request once if the connection drops before any
        answer, RFC 9112 §9.3.1; that stays one request here.)

        `check` looks at the decoded JSON of a 2xx answer and returns what is wrong with it, or
        None; a problem makes the answer `invalid`, counted as such, instead of `ok`.
        """
        target = url if isinstance(url, URL) else URL(url)
        started = time.monotonic()
        try:
            response = await self._exchange(
                api, method, target, headers=headers, params=params, form=form
            )
            problem = _checked(check, response.data) if check is not None else None
            if problem is not None:
                raise AdobeInvalidResponse(
                    f"{api} {method} {target.path}: unexpected answer: {problem}",
                    api=api,
                    result=RequestResult.INVALID,
                    status=response.status,
                )
        except AdobeError as exc:
            self._finish(api, method, target, result=exc.result, status=exc.status, started=started)
            raise
        self._finish(
            api, method, target, result=RequestResult.OK, status=response.status, started=started
        )
        return response

    def _finish(
        self,
        api: AdobeApi,
        method: str,
        url: URL,
        *,
        result: RequestResult,
        status: int | None,
        started: float,
    ) -> None:
        self._on_request(api, result)
        # The path only: the query may hold a journal position, and headers hold the token.
        request = {"api": api.value, "method": method, "path": url.path, "status": status}
        seconds = round(time.monotonic() - started, 3)
        logger.debug("adobe request", extra={**request, "result": result.value, "seconds": seconds})

    async def _exchange(
        self,
        api: AdobeApi,
        method: str,
        url: URL,
        *,
        headers: Mapping[str, str] | None,
        params: Sequence[tuple[str, str]] | None,
        form: Mapping[str, str] | None,
    ) -> AdobeResponse:
        where = f"{api} {method} {url.path}"
        try:
            # One budget for connecting, sending and reading the whole body.
            async with (
                asyncio.timeout(self._timeout),
                self._open().request(
                    method,
                    url,
                    headers=headers,
                    params=params,
                    data=form,
                    allow_redirects=False,
                ) as response,
            ):
                return await self._read(api, where, response)
        except TimeoutError:
            message = f"{where}: no complete answer within {self._timeout:g}s"
            raise AdobeNetworkError(message, api=api, result=RequestResult.NETWORK_ERROR) from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError) as exc:
            # The exception's type and text only: its repr would carry the request headers.
            message = f"{where}: {type(exc).__name__}: {exc}"
            raise AdobeNetworkError(message, api=api, result=RequestResult.NETWORK_ERROR) from None
        except aiohttp.ClientError as exc:
            message = f"{where}: malformed HTTP answer ({type(exc).__name__})"
            raise AdobeInvalidResponse(message, api=api, result=RequestResult.INVALID) from None

    async def _read(
        self, api: AdobeApi, where: str, response: aiohttp.ClientResponse
    ) -> AdobeResponse:
        status = response.status
        result = classify_status(status)
        retry_after = retry_after_seconds(response.headers.get("Retry-After"), self._clock())
        if result is not RequestResult.OK:
            body = await self._body(response, ERROR_BODY_BYTES, truncate=True)
            error = _STATUS_ERRORS[result]
            text = "redirect refused" if 300 <= status < 400 else f"HTTP {status}"
            raise error(
                f"{where}: {text}{_error_code(body)}",
                api=api,
                result=result,
                status=status,
                retry_after=retry_after,
                body=body,
            )
        declared = response.content_length
        if declared is not None and declared > self._max_body_bytes:
            raise self._too_large(api, where, status)
        body = await self._body(response, self._max_body_bytes, truncate=False)
        if len(body) > self._max_body_bytes:
            raise self._too_large(api, where, status)
        data: Any = None
        if body.strip():
            try:
                data = json.loads(body)
            except (ValueError, RecursionError) as exc:
                # json's message names a position, never the content.
                reason = str(exc) if isinstance(exc, ValueError) else "nested too deep"
                raise AdobeInvalidResponse(
                    f"{where}: answer is not JSON: {reason}",
                    api=api,
                    result=RequestResult.INVALID,
                    status=status,
                ) from None
        return AdobeResponse(
            api=api,
            status=status,
            url=response.url,
            headers=response.headers,
            body=body,
            data=data,
            retry_after=retry_after,
            links=_links(response),
        )

    async def _body(self, response: aiohttp.ClientResponse, limit: int, *, truncate: bool) -> bytes:
        # Read in chunks so an endless or huge answer costs at most `limit` (+ a chunk) of memory.
        body = bytearray()
        async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
            body += chunk
            if len(body) > limit:
                return bytes(body[:limit]) if truncate else bytes(body)
        return bytes(body)

    def _too_large(self, api: AdobeApi, where: str, status: int) -> AdobeInvalidResponse:
        return AdobeInvalidResponse(
            f"{where}: answer larger than {self._max_body_bytes} bytes",
            api=api,
            result=RequestResult.INVALID,
            status=status,
        )
