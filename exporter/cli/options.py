"""Command-line options shared by every command: the settings flags, and usage errors."""

from __future__ import annotations

import argparse
import os

from exporter.config import SETTING_FIELDS, Settings, load_settings
from exporter.domain import ExporterError

# List settings whose flag is given once per value (their env variable is comma-separated).
REPEATED_FLAGS = {"client_ids": "--client-id", "sandboxes": "--sandbox"}


class UsageError(ExporterError):
    """Bad command-line use (exit 2)."""


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting (each also AEP_EXPORTER_<NAME>)."""
    group = parser.add_argument_group("settings (each also AEP_EXPORTER_<NAME>)")
    for name, info in SETTING_FIELDS.items():
        flag = "--" + name.replace("_", "-")
        help_text = info.description or None
        if name in REPEATED_FLAGS:
            group.add_argument(REPEATED_FLAGS[name], dest=name, action="append", help=help_text)
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
