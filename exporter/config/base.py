"""What every settings group shares: the error, the group base class and the value types."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from exporter.domain import ExporterError
from exporter.durations import parse_duration


class ConfigError(ExporterError):
    """The configuration is invalid; the message is one readable line."""


class SettingsGroup(BaseModel):
    """Base of a group of settings; `Settings` combines the groups into one flat set of fields."""

    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True)


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    return value


def comma_list(value: Any) -> Any:
    """Split a comma-separated string (as env vars give lists); other values pass through."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


Duration = Annotated[float, BeforeValidator(_duration), Field(ge=0)]


def split_host_port(address: str) -> tuple[str, int]:
    """Split `host:port` or `[v6]:port` into its parts."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen address {address!r} must be host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def is_loopback_host(host: str) -> bool:
    """True for localhost and the loopback ranges (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
