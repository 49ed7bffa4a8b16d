"""The app factory: the main listener and the separate metrics listener, over one Exporter."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CollectorRegistry

from exporter.config import Settings
from exporter.http.routes import EXPORTER, add_health_routes, add_metrics_routes
from exporter.http.webconfig import WebConfig
from exporter.service import build_exporter, running
from exporter.sources.body import RAW_BODIES

__all__ = ["EXPORTER", "create_app", "create_metrics_app"]


def _guard_all_but(open_paths: frozenset[str], guard: Middleware) -> Middleware:
    """Apply the web config's middleware everywhere except the webhook and probes."""

    @web.middleware
    async def guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in open_paths:
            return await handler(request)
        return await guard(request, handler)

    return guarded


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    async with running(app[EXPORTER]):
        yield


def create_app(
    settings: Settings,
    registry: CollectorRegistry,
    *,
    clock: Callable[[], float] = time.time,
    web_config: WebConfig | None = None,
) -> web.Application:
    """The main application: webhook (unless pull only) and probes, plus /metrics unless it has
    its own listener.

    Without a separate metrics listener the web config's basic auth guards /metrics and
    /-/reload here, never the webhook (Adobe cannot authenticate) nor the probes.
    """
    exporter = build_exporter(settings, registry, clock=clock)
    middlewares: list[Middleware] = []
    serve_metrics = not settings.metrics_listen_address
    if serve_metrics and web_config is not None:
        open_paths = frozenset({settings.webhook_path, "/healthz", "/readyz"} - {""})
        middlewares.append(_guard_all_but(open_paths, web_config.middleware()))
    # The body is read and decoded by the handler itself, within max_body_bytes, off the loop.
    app = web.Application(
        client_max_size=settings.max_body_bytes, middlewares=middlewares, handler_args=RAW_BODIES
    )
    app[EXPORTER] = exporter
    if settings.webhook_path:  # empty: pull only, the old path answers 404
        app.router.add_route("*", settings.webhook_path, exporter.webhook.handle)
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
