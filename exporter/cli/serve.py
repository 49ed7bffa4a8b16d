"""`serve`: the listeners, signals (SIGTERM/SIGINT stop, SIGHUP reloads) and a graceful stop."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from aiohttp import web
from prometheus_client import CollectorRegistry

from exporter.cli.options import settings_from_args
from exporter.cli.state import state_lock
from exporter.config import Settings, split_host_port
from exporter.domain import ExporterError
from exporter.http.app import EXPORTER, create_app, create_metrics_app
from exporter.http.webconfig import load_web_config
from exporter.logs import AccessLog, configure_logging
from exporter.service import Exporter
from exporter.stores.protocol import StoreCorrupt

log = logging.getLogger(__name__)


async def _serve(settings: Settings) -> None:
    registry = CollectorRegistry()
    split = bool(settings.metrics_listen_address)
    web_config = load_web_config(settings.web_config_file) if settings.web_config_file else None
    tls = web_config.ssl_context() if web_config is not None else None
    app = create_app(settings, registry, web_config=web_config)
    exporter = app[EXPORTER]
    if settings.verification_on and not settings.client_ids:
        log.warning(
            "no client ids configured (AEP_EXPORTER_CLIENT_IDS): signed deliveries for any "
            "Adobe I/O registration are accepted; set your credential's client id"
        )
    if not settings.verification_on:
        log.warning(
            "signature verification is OFF (--insecure-accept-unsigned): anyone who can reach "
            "the webhook can change the metrics"
        )

    runners: list[web.AppRunner] = []
    access_log = logging.getLogger("exporter.access") if settings.access_log else None
    host, port = split_host_port(settings.listen_address)
    # keepalive_timeout starts when a connection opens: it also ends slow-header connections.
    main_runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=access_log,
        access_log_class=AccessLog,
        shutdown_timeout=settings.shutdown_grace,
        keepalive_timeout=settings.idle_timeout,
    )
    await main_runner.setup()
    runners.append(main_runner)
    # Without a separate metrics listener the web config's TLS covers the one listener.
    await web.TCPSite(main_runner, host or None, port, ssl_context=None if split else tls).start()
    webhook = settings.webhook_path or "(none: pull only)"
    log.info("listening", extra={"address": settings.listen_address, "webhook": webhook})
    if split:
        metrics_app = create_metrics_app(app, web_config=web_config)
        metrics_runner = web.AppRunner(
            metrics_app,
            handle_signals=False,
            access_log=access_log,
            access_log_class=AccessLog,
            keepalive_timeout=settings.idle_timeout,
        )
        await metrics_runner.setup()
        runners.append(metrics_runner)
        m_host, m_port = split_host_port(settings.metrics_listen_address)
        await web.TCPSite(metrics_runner, m_host or None, m_port, ssl_context=tls).start()
        log.info("metrics listening", extra={"address": settings.metrics_listen_address})

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: _reload(exporter))
    await stop.wait()
    log.info("shutting down", extra={"grace_seconds": settings.shutdown_grace})
    # Stop accepting, let in-flight deliveries finish, then close the store (cleanup_ctx).
    for runner in reversed(runners):
        await runner.cleanup()
    log.info("stopped")


def _reload(exporter: Exporter) -> None:
    try:
        exporter.reload_catalogue()
    except ExporterError as exc:
        failed = {"error": str(exc)}  # one line, never a traceback
        log.error("catalogue reload failed; keeping the previous one", extra=failed)  # noqa: TRY400


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the service until SIGTERM/SIGINT."""
    settings = settings_from_args(args)
    configure_logging(settings.log_level, settings.log_format)
    try:
        with state_lock(settings, wait=False):
            asyncio.run(_serve(settings))
    except StoreCorrupt as exc:
        # One line in the configured log format, with the recovery steps; never a traceback.
        log.error("refusing to start", extra={"error": str(exc)})  # noqa: TRY400
        return 1
    return 0
