"""Command line: serve, checks (config, adobe, payload), dead letters, backfill, backup, migrate."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pydantic import SecretStr

from exporter import __version__
from exporter.catalogue import CatalogueError, load_catalogue
from exporter.cli.adobe import cmd_check_adobe
from exporter.cli.backfill import cmd_backfill
from exporter.cli.options import UsageError, add_settings_flags, settings_from_args
from exporter.cli.payloads import cmd_check_payload
from exporter.cli.serve import cmd_serve
from exporter.cli.state import cmd_backup, cmd_dead_letters, cmd_migrate_state
from exporter.config import SETTING_FIELDS, ConfigError
from exporter.domain import ExporterError
from exporter.durations import DurationError, format_duration
from exporter.http.webconfig import WebConfigError
from exporter.stores.urls import redact_url

_DURATIONS = {
    "flow_ttl",
    "dedup_window",
    "open_run_ttl",
    "key_cache_ttl",
    "key_fetch_timeout",
    "read_timeout",
    "idle_timeout",
    "shutdown_grace",
    "flow_refresh_interval",
    "reconcile_interval",
    "reconcile_window",
    "registration_poll_interval",
    "replica_sync_interval",
}


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate the settings (and the catalogue) and print the effective values, secrets masked."""
    settings = settings_from_args(args)
    catalogue = load_catalogue(settings.catalogue_path)
    for name in SETTING_FIELDS:
        value = getattr(settings, name)
        if name == "state_url":
            shown = redact_url(value.get_secret_value())
        elif isinstance(value, SecretStr):
            shown = "<set>" if value.get_secret_value() else ""
        elif name in _DURATIONS or (name == "journal_start" and isinstance(value, float)):
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="aep-flow-exporter",
        description="Prometheus exporter for Adobe Experience Platform dataflow runs.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the exporter")
    add_settings_flags(serve)
    serve.set_defaults(func=cmd_serve)

    check_config = commands.add_parser("check-config", help="validate and print the settings")
    add_settings_flags(check_config)
    check_config.set_defaults(func=cmd_check_config)

    check_adobe = commands.add_parser(
        "check-adobe", help="get a token and ask each configured Adobe API once"
    )
    add_settings_flags(check_adobe)
    check_adobe.set_defaults(func=cmd_check_adobe)

    check_payload = commands.add_parser("check-payload", help="normalize payload files")
    check_payload.add_argument("files", nargs="+", metavar="FILE", help="payload files, or -")
    check_payload.add_argument("--format", choices=("text", "json"), default="text")
    add_settings_flags(check_payload)
    check_payload.set_defaults(func=cmd_check_payload)

    dead = commands.add_parser("dead-letters", help="inspect and replay dead letters")
    dead.add_argument("action", choices=("list", "show", "replay", "purge"))
    dead.add_argument("ids", nargs="*", metavar="ID")
    dead.add_argument("--all", action="store_true", help="replay every dead letter")
    dead.add_argument("--older-than", metavar="DURATION", help="purge only older ones")
    add_settings_flags(dead)
    dead.set_defaults(func=cmd_dead_letters)

    backfill = commands.add_parser(
        "backfill", help="record the finished runs Flow Service knows and no source delivered"
    )
    backfill.add_argument(
        "--since", required=True, metavar="DURATION", help="how far back (e.g. 7d)"
    )
    add_settings_flags(backfill)
    backfill.set_defaults(func=cmd_backfill)

    backup = commands.add_parser("backup", help="write a consistent copy of the state store")
    backup.add_argument("path", metavar="PATH")
    add_settings_flags(backup)
    backup.set_defaults(func=cmd_backup)

    migrate = commands.add_parser(
        "migrate-state", help="copy a SQLite state file into PostgreSQL (one way)"
    )
    migrate.add_argument("--from", dest="source", required=True, metavar="SQLITE_PATH")
    migrate.add_argument(
        "--force", action="store_true", help="replace the state PostgreSQL already holds"
    )
    add_settings_flags(migrate)
    migrate.set_defaults(func=cmd_migrate_state)
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
