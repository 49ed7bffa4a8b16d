"""Command line: serve, check-config, check-payload, dead-letters, backup; one set of settings."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from exporter import __version__
from exporter.catalogue import Catalogue, CatalogueError, load_catalogue
from exporter.config import (
    SETTING_FIELDS,
    ConfigError,
    Settings,
    load_settings,
    split_host_port,
)
from exporter.domain import Document, DocumentKind, ExporterError, Unrecognized
from exporter.durations import DurationError, format_duration, parse_duration
from exporter.http.app import EXPORTER, Exporter, build_recorder, create_app, create_metrics_app
from exporter.http.webconfig import WebConfigError, load_web_config
from exporter.logs import configure_logging
from exporter.metrics.flows import FlowCollector
from exporter.normalize.documents import normalize_body
from exporter.payloads.shapes import PayloadError
from exporter.records import FlowState, apply_alert, apply_run, apply_start
from exporter.stores.sqlite import SQLiteStore

log = logging.getLogger(__name__)

_DURATIONS = {
    "flow_ttl",
    "dedup_window",
    "open_run_ttl",
    "key_cache_ttl",
    "key_fetch_timeout",
    "read_timeout",
    "idle_timeout",
    "shutdown_grace",
}


class UsageError(ExporterError):
    """Bad command-line use (exit 2)."""


# -- settings flags --------------------------------------------------------------------------


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (each also AEP_EXPORTER_<NAME>)")
    for name, info in SETTING_FIELDS.items():
        flag = "--" + name.replace("_", "-")
        help_text = info.description or None
        if name == "client_ids":
            group.add_argument("--client-id", dest=name, action="append", help=help_text)
        elif info.annotation is bool:
            group.add_argument(flag, dest=name, action="store_true", default=None, help=help_text)
        else:
            group.add_argument(flag, dest=name, default=None, metavar="VALUE", help=help_text)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from the environment, overridden by the flags given on the command line."""
    overrides = {
        name: getattr(args, name)
        for name in Settings.model_fields
        if getattr(args, name, None) is not None
    }
    return load_settings(os.environ, **overrides)


# -- serve -----------------------------------------------------------------------------------


@contextlib.contextmanager
def state_lock(state_path: Path, *, wait: bool) -> Iterator[None]:
    """Hold `<state>.lock` so offline commands never change a store a running service uses."""
    lock_path = state_path.with_name(state_path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise UsageError(
                f"{state_path} is in use by a running exporter; stop it first"
            ) from None
        yield


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
    host, port = split_host_port(settings.listen_address)
    # keepalive_timeout starts when a connection opens: it also ends slow-header connections.
    main_runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=settings.shutdown_grace,
        keepalive_timeout=settings.idle_timeout,
    )
    await main_runner.setup()
    runners.append(main_runner)
    # Without a separate metrics listener the web config's TLS covers the one listener.
    await web.TCPSite(main_runner, host or None, port, ssl_context=None if split else tls).start()
    log.info("listening address=%s webhook=%s", settings.listen_address, settings.webhook_path)
    if split:
        metrics_app = create_metrics_app(app, web_config=web_config)
        metrics_runner = web.AppRunner(
            metrics_app,
            handle_signals=False,
            access_log=None,
            keepalive_timeout=settings.idle_timeout,
        )
        await metrics_runner.setup()
        runners.append(metrics_runner)
        m_host, m_port = split_host_port(settings.metrics_listen_address)
        await web.TCPSite(metrics_runner, m_host or None, m_port, ssl_context=tls).start()
        log.info("metrics listening address=%s", settings.metrics_listen_address)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: _reload(exporter))
    await stop.wait()
    log.info("shutting down grace_seconds=%g", settings.shutdown_grace)
    # Stop accepting, let in-flight deliveries finish, then close the store (cleanup_ctx).
    for runner in reversed(runners):
        await runner.cleanup()
    log.info("stopped")


def _reload(exporter: Exporter) -> None:
    try:
        exporter.reload_catalogue()
    except ExporterError as exc:
        log.error("catalogue reload failed; keeping the previous one: %s", exc)  # noqa: TRY400


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the service until SIGTERM/SIGINT."""
    settings = settings_from_args(args)
    configure_logging(settings.log_level, settings.log_format)
    with state_lock(settings.state_path, wait=False):
        asyncio.run(_serve(settings))
    return 0


# -- check-config ----------------------------------------------------------------------------


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate the settings (and the catalogue) and print the effective values, secrets masked."""
    settings = settings_from_args(args)
    catalogue = load_catalogue(settings.catalogue_path)
    for name in SETTING_FIELDS:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            shown = "<set>" if value.get_secret_value() else ""
        elif name in _DURATIONS:
            shown = format_duration(value)
        elif isinstance(value, list | tuple):
            shown = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
        elif value is None:
            shown = ""
        else:
            shown = str(value)
        print(f"AEP_EXPORTER_{name.upper()}={shown}")
    print(
        f"# catalogue: {len(catalogue)} flows; verification: "
        f"{'on' if settings.verification_on else 'OFF'}"
    )
    return 0


# -- check-payload ---------------------------------------------------------------------------


def metric_changes(doc: Document, received_at: float, buckets: tuple[float, ...]) -> list[str]:
    """The flow samples one document would change on a fresh flow, as exposition lines."""
    event = doc.event
    flow = getattr(event, "flow", None)
    if flow is None:
        return []
    before = FlowState.new(flow, received_at, len(buckets) + 1)
    after = before.copy()
    if doc.kind is DocumentKind.RUN:
        apply_run(after, event, received_at, buckets)  # type: ignore[arg-type]
    elif doc.kind is DocumentKind.START:
        apply_start(after, event, received_at, already_completed=False)  # type: ignore[arg-type]
    elif doc.kind is DocumentKind.ALERT:
        apply_alert(after, event, received_at)  # type: ignore[arg-type]

    def samples(state: FlowState) -> dict[str, float]:
        collector = FlowCollector(lambda: {flow: state}, Catalogue, buckets)
        out = {}
        for family in collector.collect():
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sample.labels.items())
                out[f"{sample.name}{{{labels}}}"] = sample.value
        return out

    old, new = samples(before), samples(after)
    changes = []
    for name, value in new.items():
        if name not in old:
            changes.append(f"{name} = {value:g}")
        elif old[name] != value:
            changes.append(f"{name} {value - old[name]:+g}")
    return changes


def _document_json(doc: Document) -> dict[str, Any]:
    event = dataclasses.asdict(doc.event)
    return {
        "kind": doc.kind.value,
        "type": type(doc.event).__name__,
        "event": event,
        "dedup_keys": list(doc.dedup_keys),
        "anomalies": list(doc.anomalies),
        "recipient": doc.recipient,
        "event_id": doc.event_id,
    }


def _print_text(source: str, index: int, doc: Document, changes: list[str]) -> None:
    print(f"{source} #{index}: {doc.kind.value} ({type(doc.event).__name__})")
    for key, value in dataclasses.asdict(doc.event).items():
        if value not in (None, (), [], ""):
            print(f"  {key}: {value}")
    print(f"  dedup_keys: {', '.join(doc.dedup_keys)}")
    if doc.anomalies:
        print(f"  anomalies: {', '.join(doc.anomalies)}")
    for change in changes:
        print(f"  metric {change}")


def cmd_check_payload(args: argparse.Namespace) -> int:
    """Print each document's normalized form and the metric changes it would cause."""
    settings = settings_from_args(args)
    received_at = time.time()
    failed = False
    for name in args.files:
        try:
            body = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
        except OSError as exc:
            print(f"{name}: cannot read: {exc.strerror}", file=sys.stderr)
            failed = True
            continue
        try:
            documents = normalize_body(
                body, received_at=received_at, max_depth=settings.max_json_depth
            )
        except PayloadError as exc:
            print(f"{name}: not usable JSON: {exc.reason}", file=sys.stderr)
            failed = True
            continue
        for index, doc in enumerate(documents, start=1):
            changes = metric_changes(doc, received_at, settings.duration_buckets)
            if args.format == "json":
                entry = {"file": name, "index": index, **_document_json(doc)}
                entry["metric_changes"] = changes
                print(json.dumps(entry, default=str, ensure_ascii=False))
            else:
                _print_text(name, index, doc, changes)
            if isinstance(doc.event, Unrecognized):
                print(f"{name} #{index}: not understood: {doc.event.reason}", file=sys.stderr)
                failed = True
    return 1 if failed else 0


# -- dead letters and backup ----------------------------------------------------------------


def _open_store(settings: Settings) -> SQLiteStore:
    store = SQLiteStore(settings.state_path)
    store.open()
    return store


def cmd_dead_letters(args: argparse.Namespace) -> int:
    """List, show, replay or purge dead letters."""
    settings = settings_from_args(args)
    if args.action in ("list", "show"):
        store = _open_store(settings)
        try:
            ids = [int(i) for i in args.ids] if args.action == "show" else None
            letters = store.dead_letters(ids)
        finally:
            store.close()
        for letter in letters:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(letter.received_at))
            print(
                f"{letter.id}\t{when}\t{letter.reason}\t{letter.event_id or '-'}\t"
                f"{len(letter.body)} bytes"
            )
            if args.action == "show":
                print(letter.body.decode("utf-8", "replace"))
        if args.action == "show" and len(letters) != len(ids or []):
            print("some ids were not found", file=sys.stderr)
            return 1
        return 0
    with state_lock(settings.state_path, wait=False):
        if args.action == "purge":
            store = _open_store(settings)
            try:
                older = time.time() - parse_duration(args.older_than) if args.older_than else None
                removed = store.purge_dead_letters(older)
            finally:
                store.close()
            print(f"purged {removed} dead letters")
            return 0
        if not args.all and not args.ids:
            raise UsageError("replay needs dead-letter ids or --all")
        ids = None if args.all else [int(i) for i in args.ids]
        return asyncio.run(replay_dead_letters(settings, ids))


async def replay_dead_letters(settings: Settings, ids: Sequence[int] | None) -> int:
    """Run stored dead letters through today's parser; recorded ones leave the dead letters."""
    recorder = build_recorder(settings)
    await recorder.open()
    still_dead = 0
    try:
        letters = await recorder.run_in_writer(lambda: recorder.store.dead_letters(ids))
        for letter in letters:
            try:
                documents = normalize_body(
                    letter.body, received_at=letter.received_at, max_depth=settings.max_json_depth
                )
            except PayloadError as exc:
                documents, reason = [], exc.reason
            else:
                unknown = [d for d in documents if isinstance(d.event, Unrecognized)]
                reason = unknown[0].event.reason if unknown else ""  # type: ignore[union-attr]
            if not documents or reason:
                print(f"{letter.id}: still not understood: {reason or 'empty'}")
                still_dead += 1
                continue
            results = await recorder.record(documents, letter.received_at)
            await recorder.run_in_writer(lambda i=letter.id: _delete_letter(recorder.store, i))  # type: ignore[misc]
            summary = ", ".join(r.value for r in results)
            print(f"{letter.id}: {summary}")
    finally:
        await recorder.close()
    return 1 if still_dead else 0


def _delete_letter(store: SQLiteStore, letter_id: int) -> None:
    with store.transaction():
        store.delete_dead_letters([letter_id])


def cmd_backup(args: argparse.Namespace) -> int:
    """Write a consistent copy of the state store (safe while the service runs)."""
    settings = settings_from_args(args)
    store = _open_store(settings)
    try:
        store.backup(Path(args.path))
    finally:
        store.close()
    print(f"backup written to {args.path}")
    return 0


# -- entry point -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="aep-flow-exporter",
        description="Prometheus exporter for Adobe Experience Platform dataflow runs.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the exporter")
    _add_settings_flags(serve)
    serve.set_defaults(func=cmd_serve)

    check_config = commands.add_parser("check-config", help="validate and print the settings")
    _add_settings_flags(check_config)
    check_config.set_defaults(func=cmd_check_config)

    check_payload = commands.add_parser("check-payload", help="normalize payload files")
    check_payload.add_argument("files", nargs="+", metavar="FILE", help="payload files, or -")
    check_payload.add_argument("--format", choices=("text", "json"), default="text")
    _add_settings_flags(check_payload)
    check_payload.set_defaults(func=cmd_check_payload)

    dead = commands.add_parser("dead-letters", help="inspect and replay dead letters")
    dead.add_argument("action", choices=("list", "show", "replay", "purge"))
    dead.add_argument("ids", nargs="*", metavar="ID")
    dead.add_argument("--all", action="store_true", help="replay every dead letter")
    dead.add_argument("--older-than", metavar="DURATION", help="purge only older ones")
    _add_settings_flags(dead)
    dead.set_defaults(func=cmd_dead_letters)

    backup = commands.add_parser("backup", help="write a consistent copy of the state store")
    backup.add_argument("path", metavar="PATH")
    _add_settings_flags(backup)
    backup.set_defaults(func=cmd_backup)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; expected errors print one line and exit 2 (config/usage) or 1."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ExporterError as exc:
        print(f"aep-flow-exporter: {exc}", file=sys.stderr)
        configuration = (UsageError, ConfigError, CatalogueError, DurationError, WebConfigError)
        return 2 if isinstance(exc, configuration) else 1


if __name__ == "__main__":
    sys.exit(main())
