"""The settings groups of the exporter today, one class per concern (README "Configuration")."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from exporter.adobe.settings import AdobeSettings
from exporter.config.base import (
    Duration,
    SettingsGroup,
    comma_list,
    is_loopback_host,
    split_host_port,
)

DEFAULT_DURATION_BUCKETS = (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400)
ADOBE_KEY_BASE_URL = "https://static.adobeioevents.com"
# Adobe: "cache expiry of not more than 24h" (protocol notes §1.3.1).
MAX_KEY_CACHE_TTL = 86400.0


# De-duplication keys outlive every replay (protocol notes §18.7): Adobe retries a webhook for
# 24 h; the journal keeps 7 days, so with a pull source on they are kept a day beyond that.
DEDUP_WINDOW_PUSH = 72 * 3600.0
DEDUP_WINDOW_PULL = 8 * 86400.0


class ListenerSettings(SettingsGroup):
    """The listeners and the HTTP edge: addresses, paths, TLS/auth, timeouts."""

    listen_address: str = Field("0.0.0.0:9477", description="webhook listener (and metrics)")
    metrics_listen_address: str = Field("", description="separate listener for /metrics")
    webhook_path: str = Field("/webhook", description="path Adobe posts to; empty: pull only")
    web_config_file: Path | None = Field(None, description="exporter-toolkit web config")
    read_timeout: Duration = Field(10.0, gt=0, description="time to read one request body")
    idle_timeout: Duration = Field(
        30.0, gt=0, description="close connections without a complete request for this long"
    )
    shutdown_grace: Duration = Field(15.0, description="time to finish in-flight deliveries")

    @field_validator("webhook_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if value == "":
            return value  # no webhook route: the journal and Flow Service only (pull only)
        if not value.startswith("/") or "?" in value or "#" in value:
            raise ValueError("must be a path starting with '/'")
        return value

    @field_validator("listen_address")
    @classmethod
    def _listen(cls, value: str) -> str:
        split_host_port(value)
        return value

    @field_validator("metrics_listen_address")
    @classmethod
    def _metrics_listen(cls, value: str) -> str:
        if value:
            split_host_port(value)
        return value


class VerificationSettings(SettingsGroup):
    """Who may deliver: recipients, signature keys, the legacy secret, unsigned mode."""

    client_ids: Annotated[list[str], NoDecode, BeforeValidator(comma_list)] = Field(
        default_factory=list, description="accepted recipient client ids"
    )
    require_recipient: bool = Field(False, description="refuse documents without recipient id")
    public_key_base_url: str = Field(ADOBE_KEY_BASE_URL, description="where signature keys live")
    pinned_keys_dir: Path | None = Field(None, description="PEM files trusted without fetching")
    client_secret: SecretStr = Field(SecretStr(""), description="legacy HMAC client secret")
    client_secret_file: Path | None = Field(None, description="file holding the client secret")
    insecure_accept_unsigned: bool = Field(False, description="turn verification off")
    key_cache_ttl: Duration = Field(24 * 3600.0, description="public-key cache lifetime")
    key_fetch_timeout: Duration = Field(3.0, gt=0, description="budget to fetch one key")
    max_key_fetches: int = Field(
        8, ge=2, description="fetches of never-seen key paths per 2 s, and at once"
    )

    @field_validator("public_key_base_url")
    @classmethod
    def _key_base(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.query or parts.fragment or (parts.path not in ("", "/")):
            raise ValueError(
                "must be a scheme and host only, e.g. https://static.adobeioevents.com"
            )
        if parts.scheme == "https" and parts.hostname:
            return value.rstrip("/")
        if parts.scheme == "http" and parts.hostname and is_loopback_host(parts.hostname):
            return value.rstrip("/")
        raise ValueError("must be https (http is allowed only on a loopback address, for tests)")

    @field_validator("key_cache_ttl")
    @classmethod
    def _key_ttl(cls, value: float) -> float:
        if value > MAX_KEY_CACHE_TTL:
            raise ValueError("at most 24h: Adobe requires key caches to expire within 24 hours")
        return value

    @model_validator(mode="after")
    def _secret_file(self) -> Self:
        if self.client_secret_file is not None:
            if self.client_secret.get_secret_value():
                raise ValueError("set client_secret or client_secret_file, not both")
            try:
                secret = self.client_secret_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"cannot read client secret file: {exc.strerror}") from exc
            object.__setattr__(self, "client_secret", SecretStr(secret))
        return self

    @property
    def verification_on(self) -> bool:
        """Whether deliveries must be verified (always, unless explicitly turned off)."""
        return not self.insecure_accept_unsigned


class StateSettings(SettingsGroup):
    """The state store and how long what it keeps lives."""

    state_path: Path = Field(Path("./aep-flow-exporter.db"), description="SQLite state file")
    flow_ttl: Duration = Field(30 * 86400.0, description="expire flows not heard from")
    dedup_window: Duration = Field(
        DEDUP_WINDOW_PUSH, description="keep de-duplication keys (8d with a pull source on)"
    )
    open_run_ttl: Duration = Field(24 * 3600.0, description="drop open runs after")
    max_dead_letters: int = Field(10_000, ge=1, description="dead letters kept")
    max_dead_letter_bytes: int = Field(256 * 1024 * 1024, ge=1024, description="their bytes")


class LimitSettings(SettingsGroup):
    """Bounds on what one delivery, the deliveries in flight and the flows may take."""

    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024, description="larger bodies get 413")
    max_in_flight: int = Field(256, ge=1, description="deliveries in flight before 503")
    max_receiving: int = Field(
        128, ge=1, description="bodies received at once; beyond, the stalest is dropped (408)"
    )
    max_decompressing: int = Field(2, ge=1, description="compressed bodies inflated at once")
    max_flows: int = Field(10_000, ge=1, description="flow cap")
    max_json_depth: int = Field(64, ge=8, le=512, description="deeper JSON is not parsed")


class LoggingSettings(SettingsGroup):
    """The log format and level."""

    log_format: Literal["json", "logfmt"] = Field("json", description="json or logfmt")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="")
    access_log: bool = Field(False, description="one log line per answered request")


class MetricsSettings(SettingsGroup):
    """What the metrics show: the flow catalogue and the duration histogram."""

    catalogue_path: Path | None = Field(None, description="flow catalogue YAML")
    duration_buckets: Annotated[tuple[float, ...], NoDecode, BeforeValidator(comma_list)] = Field(
        DEFAULT_DURATION_BUCKETS, description="histogram buckets (s); empty turns it off"
    )

    @field_validator("duration_buckets")
    @classmethod
    def _buckets(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not math.isfinite(b) or b <= 0 for b in value):
            raise ValueError("buckets must be positive finite seconds")
        if list(value) != sorted(set(value)):
            raise ValueError("buckets must be strictly increasing")
        return value


class AdobeApiSettings(AdobeSettings, SettingsGroup):
    """The Adobe API features: IMS credentials, Flow Service, the journal, the registration."""
