"""The health of the Adobe I/O Events registration, polled from its resource (notes §10)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Gauge
from yarl import URL

from exporter.adobe.client import AdobeApi
from exporter.adobe.ims import TokenProvider
from exporter.adobe.polling import PollState, run_every
from exporter.normalize.values import ID_LIMIT, clean_text

log = logging.getLogger(__name__)

# Values seen in Adobe's code (`verified`, `hook_unreachable`) and the lower-cased legacy V1 set;
# the full V2 set is UNCONFIRMED (protocol notes §10.3). Anything else is logged once.
KNOWN_STATUSES = frozenset(
    {"verified", "hook_unreachable", "accepted", "verification_failed", "deleted"}
)
HEALTHY_STATUS = "verified"
_VALUE_LIMIT = 64
# On errors the registration is asked less often: 15 min at the default 5 min (protocol notes §17).
FAILURE_BACKOFF_FACTOR = 3
FAILURE_INTERVAL_CAP = 900.0


@dataclass(frozen=True, slots=True)
class Registration:
    """Adobe's raw answer for the fields the exporter shows, and what it makes of them."""

    registration_id: str
    webhook_status: str
    enabled: str
    delivery_type: str
    delivery_formats: tuple[str, ...]

    @property
    def healthy(self) -> bool:
        """Enabled, and the webhook verified (any casing: V1 said VERIFIED)."""
        return self.enabled == "true" and self.webhook_status.lower() == HEALTHY_STATUS

    @property
    def known_status(self) -> bool:
        """Whether the status is one the exporter has seen documented."""
        return self.webhook_status.lower() in KNOWN_STATUSES


def _raw(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return clean_text(value, _VALUE_LIMIT) or ""
    return ""


def _check(data: Any) -> str | None:
    return None if isinstance(data, dict) else "not a registration object"


def parse_registration(data: dict[str, Any], url: str) -> Registration:
    """The registration resource's fields (protocol notes §10.2); its id from the URL if absent."""
    registration_id = clean_text(data.get("registration_id"), ID_LIMIT) or URL(url).name
    enabled = data.get("enabled")
    formats = []
    interests = data.get("events_of_interest")
    for interest in interests if isinstance(interests, list) else []:
        value = _raw(interest.get("event_delivery_format")) if isinstance(interest, dict) else ""
        if value and value not in formats:
            formats.append(value)
    return Registration(
        registration_id=registration_id,
        webhook_status=_raw(data.get("webhook_status")),
        # A boolean in the spec; a "true"/"false" string is taken as the same.
        enabled=_raw(enabled).lower() if isinstance(enabled, str) else _raw(enabled),
        delivery_type=_raw(data.get("delivery_type")),
        delivery_formats=tuple(formats),
    )


async def fetch_registration(tokens: TokenProvider, url: str) -> Registration:
    """GET the registration resource once."""
    response = await tokens.request(AdobeApi.REGISTRATION, "GET", url, check=_check)
    return parse_registration(response.data, url)


class RegistrationWatcher:
    """Polls the registration and exports `aep_events_registration_info` and `_healthy`."""

    def __init__(
        self,
        tokens: TokenProvider,
        url: str,
        *,
        interval: float,
        info: Gauge,
        healthy: Gauge,
        on_success: Callable[[], None] = lambda: None,
    ) -> None:
        self._tokens = tokens
        self._url = url
        self._interval = interval
        self._info = info
        self._healthy = healthy
        self._on_success = on_success
        self._current: Registration | None = None
        self._unknown_logged: set[str] = set()
        self.state = PollState("registration")

    async def run(self) -> None:
        """Forever: poll every interval, less often while it fails."""
        failure = max(
            self._interval, min(self._interval * FAILURE_BACKOFF_FACTOR, FAILURE_INTERVAL_CAP)
        )
        await run_every(self._interval, self.poll, self.state, failure_interval=failure)

    async def poll(self) -> None:
        """One GET; the series follow Adobe's answer (a change replaces them)."""
        registration = await fetch_registration(self._tokens, self._url)
        previous, self._current = self._current, registration
        if previous != registration:
            self._export(previous, registration)
            state = {
                "registration_id": registration.registration_id,
                "webhook_status": registration.webhook_status,
                "enabled": registration.enabled,
                "delivery_type": registration.delivery_type,
                "event_delivery_format": ",".join(registration.delivery_formats),
                "healthy": registration.healthy,
            }
            log.info("registration", extra=state)
        status = registration.webhook_status
        if not registration.known_status and status not in self._unknown_logged:
            self._unknown_logged.add(status)
            log.warning(
                "registration webhook_status is a value the exporter does not know; counted"
                " unhealthy",
                extra={"webhook_status": status},
            )
        self._on_success()

    def _export(self, previous: Registration | None, current: Registration) -> None:
        labels = _info_labels(current)
        if previous is not None:
            if _info_labels(previous) != labels:
                self._info.remove(*_info_labels(previous))
            if previous.registration_id != current.registration_id:
                self._healthy.remove(previous.registration_id)
        self._info.labels(*labels).set(1)
        self._healthy.labels(current.registration_id).set(1 if current.healthy else 0)


def _info_labels(registration: Registration) -> tuple[str, str, str, str]:
    return (
        registration.registration_id,
        registration.webhook_status,
        registration.enabled,
        registration.delivery_type,
    )
