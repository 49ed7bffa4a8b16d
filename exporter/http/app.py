"""The aiohttp application: webhook edge, health, /metrics, reload, and background maintenance."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import html
import logging
import time
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

from exporter import __version__
from exporter.catalogue import Catalogue, CatalogueError, load_catalogue
from exporter.config import Settings
from exporter.domain import Document, DocumentKind, FlowRun, Unrecognized
from exporter.http.webconfig import WebConfig
from exporter.metrics.flows import FlowCollector
from exporter.metrics.rendering import FlowExposition, render_metrics
from exporter.metrics.self_metrics import SelfMetrics
from exporter.normalize.documents import normalize_body
from exporter.payloads.shapes import PayloadError
from exporter.recorder import BatchOutcome, Limits, Recorder, Result
from exporter.records import lag_seconds
from exporter.stores.sqlite import SQLiteStore, StoreUnavailable
from exporter.verify.keys import PublicKeyStore
from exporter.verify.signatures import DeliveryVerifier, VerificationFailure, check_recipients

log = logging.getLogger(__name__)

MAINTENANCE_INTERVAL = 60.0
READINESS_RETRY_INTERVAL = 2.0
UNSIGNED_WARNING_INTERVAL = 60.0


@dataclass
class Exporter:
    """Everything a running exporter holds; built once, shared by its listeners."""

    settings: Settings
    metrics: SelfMetrics
    recorder: Recorder
    verifier: DeliveryVerifier | None
    keys: PublicKeyStore | None
    clock: Callable[[], float]
    exposition: FlowExposition
    catalogue: Catalogue = field(default_factory=Catalogue)
    store_ready: bool = False
    in_flight: int = 0
    _last_unsigned_warning: float = field(default=-UNSIGNED_WARNING_INTERVAL)
    _store_incident: bool = False

    def reload_catalogue(self) -> None:
        """Re-read the catalogue file; on error keep the current one and raise CatalogueError."""
        self.catalogue = load_catalogue(self.settings.catalogue_path)
        log.info("catalogue loaded flows=%d", len(self.catalogue))

    def warn_unsigned(self) -> None:
        """Warn that an unsigned delivery was accepted, at most once a minute."""
        now = time.monotonic()
        if now - self._last_unsigned_warning >= UNSIGNED_WARNING_INTERVAL:
            self._last_unsigned_warning = now
            log.warning("accepted an unsigned delivery: verification is off (insecure mode)")

    def mark_store(self, ready: bool, reason: str = "") -> None:
        """Track store readiness; one log line per incident, not per request."""
        if ready and not self.store_ready and self._store_incident:
            log.warning("state store writable again; ready")
        if not ready and not self._store_incident:
            log.error("state store unavailable; answering 503 until it recovers: %s", reason)
        self._store_incident = not ready
        self.store_ready = ready
        self.metrics.store_ready.set(1 if ready else 0)


EXPORTER = web.AppKey("exporter", Exporter)


def build_recorder(settings: Settings) -> Recorder:
    """The write path over the configured state file, with the configured bounds."""
    limits = Limits(
        max_flows=settings.max_flows,
        duration_buckets=settings.duration_buckets,
        max_dead_letters=settings.max_dead_letters,
        max_dead_letter_bytes=settings.max_dead_letter_bytes,
    )
    return Recorder(SQLiteStore(settings.state_path), limits)


def build_exporter(
    settings: Settings, registry: CollectorRegistry, *, clock: Callable[[], float] = time.time
) -> Exporter:
    """Wire the parts from settings; nothing is started or opened yet."""
    metrics = SelfMetrics(registry, verification_on=settings.verification_on)
    recorder = build_recorder(settings)
    keys: PublicKeyStore | None = None
    verifier: DeliveryVerifier | None = None
    if settings.verification_on:
        keys = PublicKeyStore(
            base_url=settings.public_key_base_url,
            pinned_dir=settings.pinned_keys_dir,
            cache_ttl=settings.key_cache_ttl,
            fetch_timeout=settings.key_fetch_timeout,
            on_fetch=lambda result: metrics.key_fetches.labels(result).inc(),
        )
        verifier = DeliveryVerifier(
            keys=keys, client_secret=settings.client_secret.get_secret_value()
        )
    exposition = FlowExposition(settings.duration_buckets)
    exporter = Exporter(settings, metrics, recorder, verifier, keys, clock, exposition)
    exporter.reload_catalogue()
    metrics.tracked_flows.set_function(lambda: len(recorder.flows))
    metrics.dead_letters_stored.set_function(lambda: recorder.dead_letters_stored)
    recorder.on_batch.append(lambda outcome: _count_batch(exporter, outcome))
    recorder.on_batch.append(lambda outcome: exposition.note_changed(outcome.changed))
    registry.register(
        FlowCollector(lambda: recorder.flows, lambda: exporter.catalogue, settings.duration_buckets)
    )
    return exporter


def _count_batch(exporter: Exporter, outcome: BatchOutcome) -> None:
    if outcome.overflowed:
        exporter.metrics.flows_overflow.inc(outcome.overflowed)
    if outcome.dead_letters_added:
        exporter.metrics.dead_letters.inc(outcome.dead_letters_added)
    if outcome.dead_letters_evicted:
        exporter.metrics.dead_letters_evicted.inc(outcome.dead_letters_evicted)


def count_documents(
    exporter: Exporter, documents: list[Document], results: list[Result], received_at: float
) -> None:
    """Self-metrics for one recorded delivery: outcomes, anomalies, lag, last notification."""
    metrics = exporter.metrics
    for doc, result in zip(documents, results, strict=True):
        if result is Result.VALIDATION:
            continue
        metrics.notifications.labels(doc.kind.value, result.value).inc()
        if result is not Result.RECORDED:
            continue
        for name in doc.anomalies:
            metrics.anomalies.labels(name).inc()
        if isinstance(doc.event, FlowRun):
            lag = lag_seconds(doc.event, received_at)
            if lag is not None:
                metrics.notification_lag.observe(lag)
        metrics.last_notification.set(received_at)


# -- webhook ---------------------------------------------------------------------------------


class _Reject(Exception):
    def __init__(self, status: int, reason: str, text: str) -> None:
        self.status, self.reason, self.text = status, reason, text


async def _read_body(request: web.Request, settings: Settings) -> bytes:
    """Read the body within the size limit (chunked bodies too) and the read timeout."""
    limit = settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise _Reject(413, "body_too_large", f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(settings.read_timeout):
            async for chunk in request.content.iter_any():
                size += len(chunk)
                if size > limit:
                    raise _Reject(413, "body_too_large", f"body larger than {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise _Reject(408, "read_timeout", "request body not received in time") from None
    except web.RequestPayloadError as exc:
        # A Content-Encoding that does not decode: the sender's error, never a 500.
        raise _Reject(400, "invalid_json", f"request body not decodable: {exc}") from None
    return b"".join(chunks)


def _whole_body_dead_letter(body: bytes, reason: str, header_event_id: str | None) -> Document:
    """A verified body that is not JSON still gets stored (a 4xx would make Adobe drop it)."""
    digest = hashlib.sha256(body).hexdigest()
    keys = (f"sha256:{digest}",) + ((f"event:{header_event_id}",) if header_event_id else ())
    return Document(
        kind=DocumentKind.UNKNOWN,
        event=Unrecognized(reason=reason),
        dedup_keys=keys,
        event_id=header_event_id,
        raw=body,
    )


async def _receive(request: web.Request, exporter: Exporter) -> web.Response:
    settings = exporter.settings
    body = await _read_body(request, settings)
    if exporter.verifier is not None:
        try:
            await exporter.verifier.verify(request.headers, body)
        except VerificationFailure as exc:
            status = 503 if exc.reason == "key_unavailable" else 401
            raise _Reject(status, exc.reason, "delivery not verified") from None
    else:
        exporter.warn_unsigned()

    received_at = exporter.clock()
    header_event_id = request.headers.get("x-adobe-event-id") or None
    try:
        documents = normalize_body(
            body,
            received_at=received_at,
            header_event_id=header_event_id,
            max_depth=settings.max_json_depth,
        )
    except PayloadError as exc:
        if exporter.verifier is None:
            raise _Reject(400, "invalid_json", f"body is not usable JSON: {exc.reason}") from None
        documents = [_whole_body_dead_letter(body, exc.reason, header_event_id)]
    if not documents:
        documents = [_whole_body_dead_letter(body, "empty delivery", header_event_id)]

    if settings.client_ids:
        try:
            # Dead letters carry no recipient; they are stored, never refused (PRODUCT.md).
            missing = check_recipients(
                [doc for doc in documents if not isinstance(doc.event, Unrecognized)],
                client_ids=frozenset(settings.client_ids),
                require=settings.require_recipient,
            )
        except VerificationFailure as exc:
            raise _Reject(401, exc.reason, "not a recipient of this delivery") from None
        if missing:
            exporter.metrics.recipient_missing.inc(missing)

    if not exporter.store_ready:
        raise _Reject(503, "store_unavailable", "state store unavailable")
    try:
        results = await exporter.recorder.record(documents, received_at)
    except StoreUnavailable as exc:
        exporter.mark_store(False, str(exc))
        raise _Reject(503, "store_unavailable", "state store unavailable") from None

    for doc in documents:
        if doc.kind is DocumentKind.VALIDATION:
            log.warning(
                "Adobe asked for asynchronous webhook validation: open the validation URL "
                "within 5 minutes url=%s",
                getattr(doc.event, "url", ""),
            )
    count_documents(exporter, documents, results, received_at)
    summary: dict[str, int] = {}
    for result in results:
        summary[result.value] = summary.get(result.value, 0) + 1
    return web.json_response({"status": "ok", "documents": summary})


async def webhook(request: web.Request) -> web.Response:
    """POST: a delivery; GET: the registration challenge (reference §1.1)."""
    exporter = request.app[EXPORTER]
    if request.method == hdrs.METH_GET:
        challenge = request.query.get("challenge")
        if challenge is None:
            return web.Response(status=400, text="missing challenge parameter\n")
        return web.Response(text=challenge, content_type="text/plain")
    if request.method != hdrs.METH_POST:
        exporter.metrics.rejected.labels("method_not_allowed").inc()
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])

    started = time.perf_counter()
    if request.headers.get("x-adobe-retry-count"):
        exporter.metrics.delivery_retries.inc()
    if exporter.in_flight >= exporter.settings.max_in_flight:
        exporter.metrics.rejected.labels("too_many_in_flight").inc()
        return web.Response(
            status=503, text="too many deliveries in flight\n", headers={"Retry-After": "5"}
        )
    exporter.in_flight += 1
    try:
        return await _receive(request, exporter)
    except _Reject as reject:
        exporter.metrics.rejected.labels(reject.reason).inc()
        headers = {"Retry-After": "30"} if reject.status == 503 else None
        return web.Response(status=reject.status, text=reject.text + "\n", headers=headers)
    finally:
        exporter.in_flight -= 1
        exporter.metrics.delivery_duration.observe(time.perf_counter() - started)


# -- health, landing page, metrics, reload ------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process serves requests."""
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the store accepts writes (key availability never affects it)."""
    if request.app[EXPORTER].store_ready:
        return web.Response(text="ready\n")
    return web.Response(status=503, text="state store unavailable\n")


async def landing(request: web.Request) -> web.Response:
    """A small page with the version and links."""
    settings = request.app[EXPORTER].settings
    links = [settings.webhook_path, "/metrics", "/healthz", "/readyz"]
    items = "".join(f'<li><a href="{html.escape(p)}">{html.escape(p)}</a></li>' for p in links)
    return web.Response(
        text=f"<!doctype html><html><head><title>aep-flow-exporter</title></head><body>"
        f"<h1>aep-flow-exporter {__version__}</h1><ul>{items}</ul></body></html>",
        content_type="text/html",
    )


async def metrics_endpoint(request: web.Request) -> web.StreamResponse:
    """/metrics with the library's content negotiation, streamed a metric family at a time.

    Rendering yields to deliveries between slices; gzip runs in a thread (zlib releases the GIL),
    so a 10 000-flow scrape never holds the event loop for long.
    """
    exporter = request.app[EXPORTER]
    accept = ",".join(request.headers.getall(hdrs.ACCEPT, []))
    encoder, content_type = choose_encoder(accept)
    openmetrics = content_type.startswith("application/openmetrics-text")
    compress = gzip_accepted(request.headers.get(hdrs.ACCEPT_ENCODING, ""))
    # A snapshot: rendering yields to deliveries, which replace records meanwhile.
    records, catalogue = dict(exporter.recorder.flows), exporter.catalogue
    chunks = render_metrics(
        exporter.metrics, exporter.exposition, records, catalogue, encoder,
        openmetrics=openmetrics,
    )  # fmt: skip
    response = web.StreamResponse(headers={hdrs.CONTENT_TYPE: content_type})
    gzipper = None
    if compress:
        response.headers[hdrs.CONTENT_ENCODING] = "gzip"
        gzipper = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    await response.prepare(request)
    async for chunk in chunks:
        data = chunk if gzipper is None else await asyncio.to_thread(gzipper.compress, chunk)
        await response.write(data)
    if gzipper is not None:
        await response.write(gzipper.flush())
    await response.write_eof()
    return response


async def reload(request: web.Request) -> web.Response:
    """POST /-/reload: re-read the catalogue."""
    try:
        request.app[EXPORTER].reload_catalogue()
    except CatalogueError as exc:
        log.error("catalogue reload failed; keeping the previous one: %s", exc)  # noqa: TRY400
        return web.Response(status=500, text=f"{exc}\n")
    return web.Response(text="reloaded\n")


def add_health_routes(app: web.Application) -> None:
    """Liveness and readiness: on every listener, unauthenticated, for probes."""
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)


def add_metrics_routes(app: web.Application, *, with_reload: bool) -> None:
    """Landing page and /metrics (and /-/reload where it is protected)."""
    app.router.add_get("/metrics", metrics_endpoint)
    app.router.add_get("/", landing)
    if with_reload:
        app.router.add_post("/-/reload", reload)


def _guard_all_but(open_paths: frozenset[str], guard: Middleware) -> Middleware:
    """Apply the web config's middleware everywhere except the webhook and probes."""

    @web.middleware
    async def guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in open_paths:
            return await handler(request)
        return await guard(request, handler)

    return guarded


# -- lifecycle -------------------------------------------------------------------------------


async def _maintain(exporter: Exporter) -> None:
    settings = exporter.settings
    while True:
        try:
            if exporter.store_ready:
                await exporter.recorder.prune(
                    now=exporter.clock(),
                    flow_ttl=settings.flow_ttl,
                    open_run_ttl=settings.open_run_ttl,
                    dedup_window=settings.dedup_window,
                    protected=lambda key: key in exporter.catalogue,
                )
        except StoreUnavailable as exc:
            exporter.mark_store(False, str(exc))
        await asyncio.sleep(MAINTENANCE_INTERVAL)


async def _watch_store(exporter: Exporter) -> None:
    """While the store is not ready, probe it with a real write and restore readiness."""
    while True:
        await asyncio.sleep(READINESS_RETRY_INTERVAL)
        if exporter.store_ready:
            continue
        try:
            await exporter.recorder.run_in_writer(exporter.recorder.store.check_writable)
        except StoreUnavailable as exc:
            exporter.mark_store(False, str(exc))
        else:
            exporter.mark_store(True)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    exporter = app[EXPORTER]
    await exporter.recorder.open()
    exporter.mark_store(True)
    for state in exporter.recorder.flows.values():
        exporter.metrics.last_notification.set(state.last_received)
    # The loaded records live long: keep the cyclic collector from rescanning them (its full
    # passes over 10 000 flows pause the event loop for tens of milliseconds).
    gc.freeze()
    log.info(
        "state loaded flows=%d dead_letters=%d path=%s",
        len(exporter.recorder.flows),
        exporter.recorder.dead_letters_stored,
        exporter.settings.state_path,
    )
    tasks = [
        asyncio.create_task(_maintain(exporter), name="maintenance"),
        asyncio.create_task(_watch_store(exporter), name="store-watch"),
        asyncio.create_task(
            exporter.exposition.warm(lambda: exporter.recorder.flows, lambda: exporter.catalogue),
            name="exposition-warm",
        ),
    ]
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if exporter.keys is not None:
        await exporter.keys.close()
    await exporter.recorder.close()


def create_app(
    settings: Settings,
    registry: CollectorRegistry,
    *,
    clock: Callable[[], float] = time.time,
    web_config: WebConfig | None = None,
) -> web.Application:
    """The main application: webhook and probes, plus /metrics unless it has its own listener.

    Without a separate metrics listener the web config's basic auth guards /metrics and
    /-/reload here, never the webhook (Adobe cannot authenticate) nor the probes.
    """
    exporter = build_exporter(settings, registry, clock=clock)
    middlewares: list[Middleware] = []
    serve_metrics = not settings.metrics_listen_address
    if serve_metrics and web_config is not None:
        open_paths = frozenset({settings.webhook_path, "/healthz", "/readyz"})
        middlewares.append(_guard_all_but(open_paths, web_config.middleware()))
    # The body is read by the handler itself, within max_body_bytes.
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=middlewares)
    app[EXPORTER] = exporter
    app.router.add_route("*", settings.webhook_path, webhook)
    add_health_routes(app)
    if serve_metrics:
        # /-/reload changes state: only behind authentication on a shared listener.
        with_reload = web_config is not None and web_config.auth_enabled
        add_metrics_routes(app, with_reload=with_reload)
    app.cleanup_ctx.append(_lifecycle)
    return app


def create_metrics_app(
    main: web.Application, *, web_config: WebConfig | None = None
) -> web.Application:
    """The separate metrics listener: /metrics, probes and /-/reload, behind the web config."""
    middlewares = [web_config.middleware()] if web_config is not None else []
    app = web.Application(middlewares=middlewares)
    app[EXPORTER] = main[EXPORTER]
    add_health_routes(app)
    add_metrics_routes(app, with_reload=True)
    return app
