"""Adobe API settings (`AEP_EXPORTER_IMS_*`, platform, journal, registration), validated once."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import NoDecode

from exporter.adobe.client import AdobeApi
from exporter.durations import parse_duration

DEFAULT_IMS_URL = "https://ims-na1.adobelogin.com/ims/token/v3"
DEFAULT_PLATFORM_URL = "https://platform.adobe.io"
# The journal keeps events for 7 days (protocol notes §9.3): seeking further back finds nothing.
JOURNAL_RETENTION_SECONDS = 7 * 86400.0
# Every Adobe-side cadence accepts 1s and up (README "Configuration"); 0 turns a task off.
MIN_CADENCE_SECONDS = 1.0
# x-sandbox-name carries the all-lowercase sandbox name, e.g. `prod` (protocol notes §7).
SANDBOX_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,255}")
# A scope, client id or org id is one visible ASCII word: no spaces, no commas, no controls.
_WORD = re.compile(r"[!-+\--~]+")
# The registration resource: .../events/{consumerOrgId}/{projectId}/{workspaceId}/registrations/
# {registrationId} (protocol notes §10.1).
_REGISTRATION_PATH = re.compile(r".*/events/[^/]+/[^/]+/[^/]+/registrations/[^/]+")
# The four settings that together turn the Adobe API features on, in the order operators read them.
_IMS_CREDENTIALS = ("ims_client_id", "ims_client_secret", "ims_scopes", "ims_org_id")


def _env(field: str) -> str:
    return f"AEP_EXPORTER_{field.upper()}"


def _comma_list(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    return value


def _cadence(value: Any) -> Any:
    # "0" has no unit, so parse_duration would refuse it; here it means "off".
    if isinstance(value, str) and value.strip() == "0":
        return 0.0
    return _duration(value)


def _journal_start(value: Any) -> Any:
    if isinstance(value, str):
        word = value.strip().lower()
        return word if word in ("oldest", "latest") else parse_duration(word)
    return value


def check_adobe_url(value: str, *, query_allowed: bool = False) -> str:
    """An absolute https URL (http only on loopback, for tests), no credentials or fragment."""
    # Imported here, not at the top: exporter.config is to import this module and mix these
    # fields into its Settings, and a top-level import each way would be a cycle.
    from exporter.config import is_loopback_host  # noqa: PLC0415

    parts = urlsplit(value.strip())
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        raise ValueError("has an invalid port") from None
    if not parts.hostname:
        raise ValueError("must be an absolute URL such as https://host/path")
    if parts.username is not None or parts.password is not None:
        # URLs reach logs and errors; credentials belong in the IMS settings.
        raise ValueError("must not carry a user name or password")
    if parts.fragment or (parts.query and not query_allowed):
        raise ValueError("must not carry a query or fragment")
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(parts.hostname)):
        return value.strip()
    raise ValueError("must be https (http is allowed only on a loopback address, for tests)")


Cadence = Annotated[float, BeforeValidator(_cadence), Field(ge=0)]
Window = Annotated[float, BeforeValidator(_duration), Field(gt=0)]
CommaList = Annotated[list[str], NoDecode, BeforeValidator(_comma_list)]
JournalStart = Annotated[Literal["oldest", "latest"] | float, BeforeValidator(_journal_start)]


class AdobeSettings(BaseModel):
    """The Adobe API settings (README "Configuration"); the service mixes them into Settings."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    ims_url: str = Field(DEFAULT_IMS_URL, description="IMS token endpoint")
    ims_client_id: str = Field("", description="OAuth Server-to-Server client id (x-api-key)")
    ims_client_secret: SecretStr = Field(SecretStr(""), description="its secret")
    ims_client_secret_file: Path | None = Field(None, description="file holding the secret")
    ims_scopes: CommaList = Field(default_factory=list, description="comma-separated scopes")
    ims_org_id: str = Field("", description="IMS organization, ...@AdobeOrg")
    platform_url: str = Field(DEFAULT_PLATFORM_URL, description="AEP API base")
    sandboxes: CommaList = Field(default_factory=list, description="sandboxes whose flows we list")
    flow_refresh_interval: Cadence = Field(900.0, description="flow enrichment cadence; 0: off")
    reconcile_interval: Cadence = Field(900.0, description="run reconciliation cadence; 0: off")
    reconcile_window: Window = Field(86400.0, description="how far back reconciliation looks")
    journal_url: str = Field("", description="the registration's Journaling API URL")
    journal_start: JournalStart = Field(
        "oldest", description="where a journal without cursor starts: oldest, latest, or seek back"
    )
    registration_url: str = Field("", description="the I/O Events registration resource")
    registration_poll_interval: Cadence = Field(300.0, description="registration health cadence")

    @field_validator("ims_client_id", "ims_org_id")
    @classmethod
    def _ims_word(cls, value: str) -> str:
        value = value.strip()
        if value and not _WORD.fullmatch(value):
            raise ValueError("must be one word without spaces or commas")
        return value

    @field_validator("ims_org_id")
    @classmethod
    def _ims_org(cls, value: str) -> str:
        if value and not value.endswith("@AdobeOrg"):
            raise ValueError("must be the IMS organization id, ending in @AdobeOrg")
        return value

    @field_validator("ims_scopes")
    @classmethod
    def _ims_scope_words(cls, value: list[str]) -> list[str]:
        for scope in value:
            if not _WORD.fullmatch(scope):
                raise ValueError(f"scope {scope[:64]!r} must be one word without spaces")
        return list(dict.fromkeys(value))

    @field_validator("ims_url", "platform_url")
    @classmethod
    def _required_url(cls, value: str) -> str:
        return check_adobe_url(value).rstrip("/")

    @field_validator("registration_url")
    @classmethod
    def _registration(cls, value: str) -> str:
        if not value.strip():
            return ""
        value = check_adobe_url(value).rstrip("/")
        if not _REGISTRATION_PATH.fullmatch(urlsplit(value).path):
            raise ValueError(
                "must be the registration resource, .../events/{consumerOrgId}/{projectId}/"
                "{workspaceId}/registrations/{registrationId}"
            )
        return value

    @field_validator("journal_url")
    @classmethod
    def _journal(cls, value: str) -> str:
        # The URL is taken as Adobe gives it, never built (protocol notes §9.1): no shape check.
        return check_adobe_url(value, query_allowed=True) if value.strip() else ""

    @field_validator("sandboxes")
    @classmethod
    def _sandbox_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not SANDBOX_NAME.fullmatch(name):
                raise ValueError(f"sandbox {name[:64]!r} must be a lowercase sandbox name")
        return list(dict.fromkeys(value))

    @field_validator("flow_refresh_interval", "reconcile_interval", "registration_poll_interval")
    @classmethod
    def _cadence_floor(cls, value: float) -> float:
        if 0 < value < MIN_CADENCE_SECONDS:
            raise ValueError("must be 0 (off) or at least 1s")
        return value

    @field_validator("reconcile_window")
    @classmethod
    def _window_floor(cls, value: float) -> float:
        if value < MIN_CADENCE_SECONDS:
            raise ValueError("must be at least 1s")
        return value

    @field_validator("journal_start")
    @classmethod
    def _journal_seek(cls, value: str | float) -> str | float:
        if isinstance(value, float) and not 0 < value <= JOURNAL_RETENTION_SECONDS:
            raise ValueError("a seek back must be more than 0s and at most 7d (journal retention)")
        return value

    @model_validator(mode="after")
    def _ims_secret_file(self) -> Self:
        if self.ims_client_secret_file is not None:
            if self.ims_client_secret.get_secret_value():
                raise ValueError(
                    "set AEP_EXPORTER_IMS_CLIENT_SECRET or AEP_EXPORTER_IMS_CLIENT_SECRET_FILE,"
                    " not both"
                )
            try:
                secret = self.ims_client_secret_file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                # The reason only: never the file's content.
                reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                message = f"cannot read AEP_EXPORTER_IMS_CLIENT_SECRET_FILE: {reason}"
                raise ValueError(message) from None
            object.__setattr__(self, "ims_client_secret", SecretStr(secret))
        return self

    @model_validator(mode="after")
    def _ims_complete(self) -> Self:
        present = {
            "ims_client_id": bool(self.ims_client_id),
            "ims_client_secret": bool(self.ims_client_secret.get_secret_value()),
            "ims_scopes": bool(self.ims_scopes),
            "ims_org_id": bool(self.ims_org_id),
        }
        missing = [_env(name) for name in _IMS_CREDENTIALS if not present[name]]
        if missing and len(missing) < len(_IMS_CREDENTIALS):
            raise ValueError(
                f"half of the IMS settings: {', '.join(missing)} missing"
                " (set all four IMS credential settings, or none)"
            )
        if not missing:
            return self
        for name in ("journal_url", "registration_url"):
            if getattr(self, name):
                raise ValueError(f"{_env(name)} needs the IMS credentials (AEP_EXPORTER_IMS_*)")
        return self

    @property
    def enabled(self) -> bool:
        """Whether the IMS credentials are set, which turns the Adobe API features on."""
        return bool(self.ims_client_id)

    @property
    def flow_enrichment_on(self) -> bool:
        """Whether Flow Service names, states and schedules are polled."""
        return self.enabled and self.flow_refresh_interval > 0

    @property
    def journal_on(self) -> bool:
        """Whether the Journaling API is polled (a pull source)."""
        return self.enabled and bool(self.journal_url)

    @property
    def reconcile_on(self) -> bool:
        """Whether Flow Service runs are reconciled (a pull source)."""
        return self.enabled and self.reconcile_interval > 0

    @property
    def adobe_apis(self) -> tuple[AdobeApi, ...]:
        """The Adobe APIs this configuration calls (none without the IMS credentials)."""
        if not self.enabled:
            return ()
        apis = [AdobeApi.IMS]
        if self.flow_refresh_interval > 0 or self.reconcile_interval > 0:
            apis.append(AdobeApi.FLOW_SERVICE)
        if self.journal_url:
            apis.append(AdobeApi.JOURNAL)
        if self.registration_url:
            apis.append(AdobeApi.REGISTRATION)
        return tuple(apis)

    @property
    def ims_scope(self) -> str:
        """The scopes as IMS takes them: one comma-separated string (protocol notes §8.1)."""
        return ",".join(self.ims_scopes)
