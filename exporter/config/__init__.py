"""Settings: groups of fields in one flat `Settings`; only `load_settings` reads the environment.

A group is a `SettingsGroup` subclass (see groups.py); listing it among the bases of `Settings`
adds its fields, each read from `AEP_EXPORTER_<FIELD>` and the flag `--<field-with-dashes>`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from pydantic import ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from exporter.config.base import ConfigError, SettingsGroup, is_loopback_host, split_host_port
from exporter.config.groups import (
    ADOBE_KEY_BASE_URL,
    DEDUP_WINDOW_PULL,
    DEFAULT_DURATION_BUCKETS,
    MAX_KEY_CACHE_TTL,
    AdobeApiSettings,
    LimitSettings,
    ListenerSettings,
    LoggingSettings,
    MetricsSettings,
    StateSettings,
    VerificationSettings,
)
from exporter.config.replicas import ReplicaSettings
from exporter.domain import Source

__all__ = [
    "ADOBE_KEY_BASE_URL",
    "DEFAULT_DURATION_BUCKETS",
    "ENV_PREFIX",
    "MAX_KEY_CACHE_TTL",
    "SETTING_FIELDS",
    "ConfigError",
    "Settings",
    "SettingsGroup",
    "describe_validation_error",
    "is_loopback_host",
    "load_settings",
    "split_host_port",
]

ENV_PREFIX = "AEP_EXPORTER_"


class Settings(
    ListenerSettings,
    VerificationSettings,
    StateSettings,
    LimitSettings,
    LoggingSettings,
    MetricsSettings,
    AdobeApiSettings,
    ReplicaSettings,
    BaseSettings,
):
    """Every setting of the exporter (README "Configuration"), from its arguments only."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", validate_default=True, frozen=True
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The constructor's arguments alone: no environment, .env or secrets directory."""
        return (init_settings,)

    @model_validator(mode="after")
    def _pull_sources(self) -> Self:
        if "dedup_window" not in self.model_fields_set and self.pull_sources_on:
            # The journal replays up to 7 days (protocol notes §18.7): keys must outlive that.
            object.__setattr__(self, "dedup_window", DEDUP_WINDOW_PULL)
        if not self.webhook_path and not self.pull_sources_on:
            raise ValueError(
                "AEP_EXPORTER_WEBHOOK_PATH is empty and no pull source is on: nothing would "
                "arrive (set AEP_EXPORTER_JOURNAL_URL, or the IMS credentials for reconciliation)"
            )
        return self

    @property
    def pull_sources_on(self) -> bool:
        """Whether the journal or Flow Service reconciliation feeds notifications."""
        return self.journal_on or self.reconcile_on

    @property
    def sources(self) -> tuple[Source, ...]:
        """The notification sources this configuration runs, in label order."""
        on = {
            Source.WEBHOOK: bool(self.webhook_path),
            Source.JOURNAL: self.journal_on,
            Source.FLOW_SERVICE: self.reconcile_on,
        }
        return tuple(source for source in Source if on[source])


# The order check-config, --help and error lines have always listed settings in; the fields of
# groups added since follow, group by group in the order of the bases of Settings.
_LISTED_FIRST = (
    "listen_address", "metrics_listen_address", "webhook_path", "state_path", "client_ids",
    "require_recipient", "public_key_base_url", "pinned_keys_dir", "client_secret",
    "client_secret_file", "catalogue_path", "web_config_file", "insecure_accept_unsigned",
    "log_format", "log_level", "max_body_bytes", "max_in_flight", "max_flows", "max_json_depth",
    "flow_ttl", "dedup_window", "open_run_ttl", "key_cache_ttl", "key_fetch_timeout",
    "read_timeout", "idle_timeout", "shutdown_grace", "max_dead_letters",
    "max_dead_letter_bytes", "duration_buckets",
)  # fmt: skip
_GROUP_ORDER = [
    name
    for group in Settings.__mro__[1:]
    if issubclass(group, SettingsGroup)
    for name in group.model_fields
]
SETTING_FIELDS: Mapping[str, FieldInfo] = {
    name: Settings.model_fields[name]
    for name in dict.fromkeys([*_LISTED_FIRST, *_GROUP_ORDER, *Settings.model_fields])
}
_POSITION = {name: index for index, name in enumerate(SETTING_FIELDS)}


class _EnvironSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading a given mapping instead of os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # As pydantic-settings reads os.environ: names match case-insensitively unless configured.
        if self.case_sensitive:
            return dict(self._environ)
        return {name.lower(): value for name, value in self._environ.items()}


def load_settings(environ: Mapping[str, str], **flags: Any) -> Settings:
    """Settings from the `AEP_EXPORTER_*` variables of `environ`, flags winning; ConfigError."""
    try:
        return Settings(**{**_EnvironSource(Settings, environ)(), **flags})
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def _listed_position(error: ErrorDetails) -> int:
    loc = error["loc"]
    return _POSITION.get(str(loc[0]), len(_POSITION)) if loc else -1


def describe_validation_error(exc: ValidationError) -> str:
    """One readable line naming the setting and what is wrong with it."""
    problems = []
    for error in sorted(exc.errors(), key=_listed_position):
        name = ".".join(str(part) for part in error["loc"]) or "settings"
        message = str(error["msg"]).removeprefix("Value error, ")
        env = f"{ENV_PREFIX}{name.upper()}" if error["loc"] else name
        problems.append(f"{env}: {message}")
    return "invalid configuration: " + "; ".join(problems)
