"""The routes beside the webhook: probes, the landing page, /metrics and /-/reload."""

from __future__ import annotations

import asyncio
import html
import logging
import zlib

from aiohttp import hdrs, web
from prometheus_client.exposition import choose_encoder, gzip_accepted

from exporter import __version__
from exporter.catalogue import CatalogueError
from exporter.metrics.rendering import render_metrics
from exporter.service import Exporter

log = logging.getLogger(__name__)

EXPORTER = web.AppKey("exporter", Exporter)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process serves requests."""
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the store accepts writes (key availability never affects it)."""
    if request.app[EXPORTER].recorder.ready:
        return web.Response(text="ready\n")
    return web.Response(status=503, text="state store unavailable\n")


async def landing(request: web.Request) -> web.Response:
    """A small page with the version and links."""
    settings = request.app[EXPORTER].settings
    links = [p for p in (settings.webhook_path, "/metrics", "/healthz", "/readyz") if p]
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
        failed = {"error": str(exc)}  # one line, never a traceback
        log.error("catalogue reload failed; keeping the previous one", extra=failed)  # noqa: TRY400
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
