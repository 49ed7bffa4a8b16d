"""IMS OAuth Server-to-Server tokens: cached, renewed early, one renewal at a time, backed off."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr
from yarl import URL

from exporter.adobe.client import (
    AdobeApi,
    AdobeClient,
    AdobeError,
    AdobeResponse,
    AdobeServerError,
    AdobeStatusError,
    AdobeThrottled,
    AdobeUnauthorized,
    RequestResult,
)
from exporter.adobe.settings import AdobeSettings

logger = logging.getLogger(__name__)

# Adobe's Node library counts a token valid only while it has 10 more minutes (protocol notes
# §8.2); a token shorter-lived than twice that renews at half its life instead, so a short test
# token is never renewed on every call.
RENEW_MARGIN_SECONDS = 600.0
# A token this close to its expiry is not handed out even while renewal fails: it could expire
# in flight.
EXPIRY_GUARD_SECONDS = 60.0
# A refused credential is a configuration error: retried slowly (protocol notes §17).
REFUSED_RETRY_SECONDS = 300.0
# Throttling, 5xx and network errors: exponential back-off with jitter, 1 s to 5 min, honouring
# Retry-After (protocol notes §13, §17), which is believed up to an hour.
BACKOFF_INITIAL_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 300.0
MAX_RETRY_AFTER_SECONDS = 3600.0
# A 401 on a token younger than this is not about the token's age: renewing would only mint
# tokens in a loop, and IMS throttles integrations that mint too many (protocol notes §8.1).
MIN_AGE_TO_RENEW_ON_401_SECONDS = 300.0
# IMS error codes and descriptions reach messages only through these alphabets.
_IMS_CODE = re.compile(r"[a-z_]{1,64}")
_PRINTABLE = re.compile(r"[^ -~]")
# A bearer token goes into a header: visible ASCII only.
_TOKEN = re.compile(r"[!-~]{1,16384}")
_CREDENTIAL_SETTINGS = "AEP_EXPORTER_IMS_URL, _CLIENT_ID, _CLIENT_SECRET, _SCOPES"


class TokenRefused(AdobeError):
    """IMS refused the credential (invalid_client, invalid_scope, any 4xx but 429)."""


class TokenUnavailable(AdobeError):
    """No token for now: IMS throttled, failed, was unreachable or answered nonsense."""


@dataclass(frozen=True, slots=True)
class _Failure:
    """The last renewal failure, re-raised to callers until the next attempt is due."""

    kind: type[TokenRefused | TokenUnavailable]
    message: str
    result: RequestResult
    status: int | None

    def error(self, retry_after: float) -> TokenRefused | TokenUnavailable:
        return self.kind(
            f"{self.message}; next attempt in {math.ceil(retry_after)}s",
            api=AdobeApi.IMS,
            result=self.result,
            status=self.status,
            retry_after=retry_after,
        )


def _check_token_answer(data: Any) -> str | None:
    # {"access_token": "...", "token_type": "bearer", "expires_in": 86399} (protocol notes §8.1).
    if not isinstance(data, dict):
        return "not a JSON object"
    token = data.get("access_token")
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        return "no usable access_token"
    lifetime = data.get("expires_in")
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float):
        return "no expires_in"
    if not math.isfinite(lifetime) or lifetime <= 0:
        return "expires_in is not a positive number of seconds"
    return None


def _ims_error(exc: AdobeError, secret: str) -> str:
    """IMS's OAuth error code and description, made safe to log."""
    try:
        document = json.loads(exc.body)
    except (ValueError, RecursionError):
        return ""
    if not isinstance(document, dict):
        return ""
    code = document.get("error")
    if not isinstance(code, str) or not _IMS_CODE.fullmatch(code):
        return ""
    description = document.get("error_description")
    if not isinstance(description, str):
        return f" {code}"
    if secret:
        description = description.replace(secret, "***")
    return f" {code}: {_PRINTABLE.sub('?', description)[:200]}"


class TokenProvider:
    """The one cached IMS token of every Adobe API request (protocol notes §8, §17)."""

    def __init__(
        self,
        client: AdobeClient,
        *,
        url: str,
        client_id: str,
        client_secret: SecretStr,
        scopes: Sequence[str],
        org_id: str,
        on_expiry: Callable[[float], None] = lambda timestamp: None,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._client = client
        self._url = url
        self._client_id = client_id
        self._client_secret = client_secret
        # One comma-separated string, copied from the credential page (protocol notes §8.3).
        self._scope = ",".join(scopes)
        self._org_id = org_id
        self._on_expiry = on_expiry
        self._clock = clock
        self._jitter = jitter
        self._token: str | None = None
        self._issued_at = 0.0
        self._expires_at = 0.0
        self._renew_at = 0.0
        self._usable_until = 0.0
        self._renewal: asyncio.Task[str] | None = None
        self._failure: _Failure | None = None
        self._next_attempt = 0.0
        self._transient_failures = 0
        self._logged_state = ""

    @classmethod
    def from_settings(
        cls, client: AdobeClient, settings: AdobeSettings, **kwargs: Any
    ) -> TokenProvider:
        """A provider for the IMS credentials of the settings (which must be `enabled`)."""
        if not settings.enabled:
            raise ValueError("the IMS credentials are not configured")
        return cls(
            client,
            url=settings.ims_url,
            client_id=settings.ims_client_id,
            client_secret=settings.ims_client_secret,
            scopes=settings.ims_scopes,
            org_id=settings.ims_org_id,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"TokenProvider(url={self._url!r}, client_id={self._client_id!r})"

    @property
    def expires_at(self) -> float | None:
        """Expiry (epoch seconds) of the cached token, if there is one."""
        return self._expires_at if self._token is not None else None

    async def token(self) -> str:
        """The cached token, renewed first if it is due; TokenRefused or TokenUnavailable."""
        now = self._clock()
        if self._token is not None and now < self._renew_at:
            return self._token
        task = self._renewal
        if task is None:
            if self._failure is not None and now < self._next_attempt:
                return self._fallback(now, self._failure)
            # One renewal however many callers: they all wait for this task.
            task = asyncio.create_task(self._renew(), name="renew IMS token")
            task.add_done_callback(_consume_outcome)
            self._renewal = task
        try:
            # Shielded: a caller that gives up must not cancel the renewal for the others.
            return await asyncio.shield(task)
        except AdobeError:
            failure = self._failure
            if failure is None:
                raise
            return self._fallback(self._clock(), failure)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and current is not None and not current.cancelling():
                # close() cancelled the renewal under a caller that is still running.
                raise TokenUnavailable(
                    "no IMS token: the token provider is closed",
                    api=AdobeApi.IMS,
                    result=RequestResult.NETWORK_ERROR,
                ) from None
            raise

    def _fallback(self, now: float, failure: _Failure) -> str:
        # A renewal failed, but the token it was to replace may still have minutes to live.
        if self._token is not None and now < self._usable_until:
            return self._token
        raise failure.error(max(0.0, self._next_attempt - now))

    def invalidate(self, token: str) -> None:
        """Forget `token` after an API answered 401 to it.

        Nothing happens if a newer token already replaced it, or if it is younger than
        MIN_AGE_TO_RENEW_ON_401_SECONDS (then the 401 is not about the token's age).
        """
        if token != self._token:
            return
        if self._clock() - self._issued_at < MIN_AGE_TO_RENEW_ON_401_SECONDS:
            # Every poll of an API that keeps refusing would repeat this: debug, not info.
            logger.debug("IMS token refused by an API moments after issue; not renewing it")
            return
        logger.info("IMS token refused by an API; renewing it")
        self._token = None

    def authorized_headers(
        self, api: AdobeApi, token: str, *, sandbox: str | None = None
    ) -> dict[str, str]:
        """Authorization, x-api-key and the org headers the API documents (protocol notes §7)."""
        headers = {"Authorization": f"Bearer {token}", "x-api-key": self._client_id}
        if api is AdobeApi.FLOW_SERVICE:
            if not sandbox:
                raise ValueError("a Flow Service request names its sandbox")
            headers["x-gw-ims-org-id"] = self._org_id
            headers["x-sandbox-name"] = sandbox
            headers["Accept"] = "application/json"
        elif api is AdobeApi.JOURNAL:
            headers["x-ims-org-id"] = self._org_id
            headers["Accept"] = "application/json"
        elif api is AdobeApi.REGISTRATION:
            headers["x-ims-org-id"] = self._org_id
            headers["Accept"] = "application/hal+json"
        else:
            raise ValueError(f"{api} requests carry no token")
        return headers

    async def request(
        self,
        api: AdobeApi,
        method: str,
        url: str | URL,
        *,
        sandbox: str | None = None,
        params: Sequence[tuple[str, str]] | None = None,
        check: Callable[[Any], str | None] | None = None,
    ) -> AdobeResponse:
        """One API request with the cached token; a 401 renews the token once and retries once."""
        token = await self.token()
        try:
            return await self._client.request(
                api,
                method,
                url,
                headers=self.authorized_headers(api, token, sandbox=sandbox),
                params=params,
                check=check,
            )
        except AdobeUnauthorized as exc:
            if exc.status != 401:
                raise
            self.invalidate(token)
            renewed = await self.token()
            if renewed == token:
                raise  # not renewed: the 401 stands
        return await self._client.request(
            api,
            method,
            url,
            headers=self.authorized_headers(api, renewed, sandbox=sandbox),
            params=params,
            check=check,
        )

    async def close(self) -> None:
        """Cancel a renewal in flight."""
        task = self._renewal
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _renew(self) -> str:
        try:
            # The credentials go in the form body, never the query string, which gets logged
            # (protocol notes §8.1).
            response = await self._client.request(
                AdobeApi.IMS,
                "POST",
                self._url,
                form={
                    "grant_type": "client_credentials",
                    "client_id": self._client_id,
                    "client_secret": self._client_secret.get_secret_value(),
                    "scope": self._scope,
                },
                check=_check_token_answer,
            )
        except AdobeError as exc:
            self._failed(exc)
            raise
        finally:
            self._renewal = None
        return self._obtained(response.data["access_token"], float(response.data["expires_in"]))

    def _obtained(self, token: str, lifetime: float) -> str:
        # expires_in is seconds for token/v3; Adobe's Java library reads it as milliseconds,
        # a bug not to copy (protocol notes §8.2).
        now = self._clock()
        self._token = token
        self._issued_at = now
        self._expires_at = now + lifetime
        self._renew_at = self._expires_at - min(RENEW_MARGIN_SECONDS, lifetime / 2)
        self._usable_until = self._expires_at - min(EXPIRY_GUARD_SECONDS, lifetime / 10)
        self._failure = None
        self._next_attempt = 0.0
        self._transient_failures = 0
        self._log_state(
            "ok", logging.INFO, "IMS token obtained", expires_in_seconds=round(lifetime)
        )
        self._on_expiry(self._expires_at)
        return token

    def _failed(self, exc: AdobeError) -> None:
        now = self._clock()
        refused = isinstance(exc, AdobeStatusError) and not isinstance(
            exc, AdobeThrottled | AdobeServerError
        )
        if refused:
            delay = REFUSED_RETRY_SECONDS
            message = (
                f"IMS refused the token request: HTTP {exc.status}"
                f"{_ims_error(exc, self._client_secret.get_secret_value())}"
                f" (check {_CREDENTIAL_SETTINGS})"
            )
            self._failure = _Failure(TokenRefused, message, exc.result, exc.status)
        else:
            self._transient_failures += 1
            ceiling = BACKOFF_INITIAL_SECONDS * 2 ** min(self._transient_failures - 1, 20)
            ceiling = min(BACKOFF_MAX_SECONDS, ceiling)
            # "Equal jitter": between half and all of the step, so retries spread but still grow.
            delay = ceiling * (0.5 + 0.5 * self._jitter())
            if exc.retry_after is not None:
                delay = max(delay, min(exc.retry_after, MAX_RETRY_AFTER_SECONDS))
            message = f"no IMS token: {exc}"
            self._failure = _Failure(TokenUnavailable, message, exc.result, exc.status)
        self._next_attempt = now + delay
        state = f"{'refused' if refused else 'unavailable'}:{exc.result}:{exc.status}"
        headline = "IMS refused the token request" if refused else "no IMS token"
        failure = {"error": message, "result": exc.result.value, "status": exc.status}
        self._log_state(
            state, logging.WARNING, headline, **failure, next_attempt_seconds=round(delay, 1)
        )

    def _log_state(self, state: str, level: int, message: str, **fields: object) -> None:
        # Once per change of state: a failing IMS must not fill the log with one line per try.
        if state != self._logged_state:
            logger.log(level, message, extra=fields)
            self._logged_state = state
        else:
            logger.debug(message, extra=fields)


def _consume_outcome(task: asyncio.Task[str]) -> None:
    # If every caller was cancelled, nobody awaits the failure: retrieve it so asyncio does not
    # log "Task exception was never retrieved".
    if not task.cancelled():
        task.exception()
