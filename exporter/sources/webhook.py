"""The webhook source: Adobe's challenge, then each delivery read within limits, verified, ingested.

It owns only what is HTTP: reading the body (`exporter/sources/body.py`), the signature check on
its bytes, the in-flight bound, and the mapping of pipeline results and rejections to answers
Adobe acts on (protocol notes §1.5: any 4xx but 429 drops an event, 5xx is retried for 24 h).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from aiohttp import hdrs, web

from exporter.domain import Source
from exporter.ingest import Delivery, Ingested, Pipeline
from exporter.logs import RateLimitedLog
from exporter.metrics.self_metrics import SelfMetrics
from exporter.recorder import Result
from exporter.rejections import Rejected, Rejection
from exporter.sources.body import BodyReader
from exporter.verify.signatures import DeliveryVerifier

log = logging.getLogger(__name__)

UNSIGNED_WARNING_INTERVAL = 60.0
# The answer to each refusal; every reason not listed here is a 401.
_STATUS = {
    Rejection.KEY_UNAVAILABLE: 503,
    Rejection.STORE_UNAVAILABLE: 503,
    Rejection.TOO_MANY_IN_FLIGHT: 503,
    Rejection.BODY_TOO_LARGE: 413,
    Rejection.READ_TIMEOUT: 408,
    Rejection.INVALID_JSON: 400,
}
_TEXT = {
    Rejection.KEY_UNAVAILABLE: "delivery not verified",
    Rejection.BAD_SIGNATURE: "delivery not verified",
    Rejection.MISSING_SIGNATURE: "delivery not verified",
    Rejection.RECIPIENT_MISMATCH: "not a recipient of this delivery",
    Rejection.RECIPIENT_MISSING: "not a recipient of this delivery",
    Rejection.STORE_UNAVAILABLE: "state store unavailable",
    Rejection.TOO_MANY_IN_FLIGHT: "too many deliveries in flight",
}
# Retry-After on a 503: Adobe retries anyway; this paces other senders.
_RETRY_AFTER = {Rejection.TOO_MANY_IN_FLIGHT: "5"}
# Sender-controlled text in a refusal line is cut here.
MAX_LOGGED_CHARS = 200


def _answer_text(summary: dict[str, int]) -> bytes:
    return json.dumps({"status": "ok", "documents": summary}).encode()


# The answer to a one-document delivery (nearly all of them), by its result: encoded once.
_ONE_DOCUMENT = {result: _answer_text({result.value: 1}) for result in Result}


def _accepted(ingested: Ingested) -> web.Response:
    """200 with how many documents had each result."""
    results = ingested.results
    text = _ONE_DOCUMENT[results[0]] if len(results) == 1 else _answer_text(ingested.summary())
    return web.Response(body=text, content_type="application/json", charset="utf-8")


class WebhookSource:
    """Serves the webhook path: GET answers the challenge, POST delivers notifications."""

    def __init__(
        self,
        pipeline: Pipeline,
        metrics: SelfMetrics,
        verifier: DeliveryVerifier | None,
        *,
        max_body_bytes: int,
        read_timeout: float,
        max_in_flight: int,
        max_receiving: int,
        max_decompressing: int,
        clock: Callable[[], float],
    ) -> None:
        self._pipeline = pipeline
        self._metrics = metrics
        self._verifier = verifier
        self.bodies = BodyReader(
            max_body_bytes=max_body_bytes,
            read_timeout=read_timeout,
            max_receiving=max_receiving,
            max_decompressing=max_decompressing,
        )
        self._max_in_flight = max_in_flight
        self._clock = clock
        self.in_flight = 0
        self._last_unsigned_warning = -UNSIGNED_WARNING_INTERVAL
        # Anyone can make refusals: 10 lines per reason a minute, then one summary line.
        self._refusals = RateLimitedLog(log, "delivery refusals suppressed")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """POST: a delivery; GET: the registration challenge (protocol notes §1.1)."""
        if request.method == hdrs.METH_GET:
            challenge = request.query.get("challenge")
            if challenge is None:
                return web.Response(status=400, text="missing challenge parameter\n")
            return web.Response(text=challenge, content_type="text/plain")
        if request.method != hdrs.METH_POST:
            self._metrics.rejected.labels(Rejection.METHOD_NOT_ALLOWED.value).inc()
            self._log_refusal(request, Rejection.METHOD_NOT_ALLOWED, 405, request.method)
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])

        started = time.perf_counter()
        if request.headers.get("x-adobe-retry-count"):
            self._metrics.delivery_retries.inc()
        try:
            return await self._deliver(request)
        except Rejected as rejected:
            return self._refuse(rejected, request)
        finally:
            self._metrics.delivery_duration.observe(time.perf_counter() - started)

    async def _deliver(self, request: web.Request) -> web.Response:
        # Checked before the body is read (no point reading it) and again once it has been:
        # a body being received holds a body slot, never an in-flight one, so senders that
        # trickle bytes cannot take the slots of deliveries being verified and recorded.
        if self.in_flight >= self._max_in_flight:
            raise Rejected(Rejection.TOO_MANY_IN_FLIGHT)
        body = await self.bodies.read(request)
        if self.in_flight >= self._max_in_flight:
            raise Rejected(Rejection.TOO_MANY_IN_FLIGHT)
        self.in_flight += 1
        try:
            return await self._verified_and_ingested(request, body)
        finally:
            self.in_flight -= 1

    async def _verified_and_ingested(self, request: web.Request, body: bytes) -> web.Response:
        if self._verifier is not None:
            await self._verifier.verify(request.headers, body)
        else:
            self._warn_unsigned()
        delivery = Delivery(
            source=Source.WEBHOOK,
            received_at=self._clock(),
            verified=self._verifier is not None,
            header_event_id=request.headers.get("x-adobe-event-id") or None,
        )
        ingested = await self._pipeline.ingest_body(body, delivery)
        return _accepted(ingested)

    def _refuse(self, rejected: Rejected, request: web.Request) -> web.Response:
        reason = rejected.reason
        self._metrics.rejected.labels(reason.value).inc()
        status = _STATUS.get(reason, 401)
        self._log_refusal(request, reason, status, rejected.detail)
        headers = {"Retry-After": _RETRY_AFTER.get(reason, "30")} if status == 503 else None
        text = _TEXT.get(reason, rejected.detail)
        return web.Response(status=status, text=text + "\n", headers=headers)

    def _log_refusal(
        self, request: web.Request, reason: Rejection, status: int, detail: str
    ) -> None:
        """One WARNING line per refusal, rate-limited per reason."""
        headers = request.headers
        self._refusals.log(
            logging.WARNING,
            reason.value,
            {"reason": reason.value},
            "delivery refused",
            status=status,
            peer=request.remote,
            forwarded_for=headers.get("X-Forwarded-For", "")[:MAX_LOGGED_CHARS],
            event_id=headers.get("x-adobe-event-id", "")[:MAX_LOGGED_CHARS],
            detail=detail[:MAX_LOGGED_CHARS],
        )

    def _warn_unsigned(self) -> None:
        """Warn that an unsigned delivery was accepted, at most once a minute."""
        now = time.monotonic()
        if now - self._last_unsigned_warning >= UNSIGNED_WARNING_INTERVAL:
            self._last_unsigned_warning = now
            log.warning("accepted an unsigned delivery: verification is off (insecure mode)")
