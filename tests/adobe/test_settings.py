"""AdobeSettings: defaults, durations, the all-or-none IMS rule, URL and secret-file checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from exporter.adobe.settings import DEFAULT_IMS_URL, DEFAULT_PLATFORM_URL, AdobeSettings
from exporter.config import describe_validation_error

SECRET = "s3cr3t-Vx9q"
CREDENTIALS: dict[str, Any] = {
    "ims_client_id": "client-1",
    "ims_client_secret": SECRET,
    "ims_scopes": "openid,AdobeID,read_organizations",
    "ims_org_id": "ABC123@AdobeOrg",
}


def problem(**values: Any) -> str:
    """The one-line message the service would print for these settings."""
    with pytest.raises(ValidationError) as caught:
        AdobeSettings(**values)
    return describe_validation_error(caught.value)


def test_defaults_leave_the_adobe_features_off() -> None:
    """Without credentials the features are off and the documented defaults apply."""
    settings = AdobeSettings()
    assert not settings.enabled
    assert settings.ims_url == DEFAULT_IMS_URL
    assert settings.platform_url == DEFAULT_PLATFORM_URL
    assert settings.flow_refresh_interval == 900
    assert settings.reconcile_interval == 900
    assert settings.reconcile_window == 86400
    assert settings.registration_poll_interval == 300
    assert settings.journal_start == "oldest"
    assert settings.sandboxes == []


def test_all_four_credentials_turn_the_features_on() -> None:
    """Client id, secret, scopes and org together enable the features; scopes split on commas."""
    settings = AdobeSettings(**CREDENTIALS)
    assert settings.enabled
    assert settings.ims_scopes == ["openid", "AdobeID", "read_organizations"]
    assert settings.ims_scope == "openid,AdobeID,read_organizations"


@pytest.mark.parametrize("left_out", sorted(CREDENTIALS))
def test_half_of_the_ims_settings_is_an_error_naming_what_is_missing(left_out: str) -> None:
    """Any three of the four credentials are refused, naming the missing one."""
    values = {name: value for name, value in CREDENTIALS.items() if name != left_out}
    message = problem(**values)
    assert "half of the IMS settings" in message
    assert f"AEP_EXPORTER_{left_out.upper()} missing" in message


def test_a_lone_client_id_names_all_three_missing_settings() -> None:
    """A client id alone names the secret, the scopes and the org as missing."""
    message = problem(ims_client_id="client-1")
    for name in ("IMS_CLIENT_SECRET", "IMS_SCOPES", "IMS_ORG_ID"):
        assert f"AEP_EXPORTER_{name}" in message


@pytest.mark.parametrize("field", ["ims_url", "platform_url", "journal_url"])
def test_http_off_loopback_is_an_error(field: str) -> None:
    """Plain http is refused for any host but loopback."""
    values = {**CREDENTIALS, field: "http://platform.example.com/x"}
    assert "must be https" in problem(**values)


@pytest.mark.parametrize("host", ["127.0.0.1:8080", "localhost", "[::1]:9000"])
def test_http_on_loopback_is_allowed_for_tests(host: str) -> None:
    """Plain http is accepted on loopback addresses, where the test fake listens."""
    settings = AdobeSettings(
        **CREDENTIALS,
        ims_url=f"http://{host}/ims/token/v3",
        platform_url=f"http://{host}/",
        journal_url=f"http://{host}/events/organizations/1/integrations/2/3",
    )
    assert settings.platform_url == f"http://{host}"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://user:pw@ims.example/token", "user name or password"),
        ("https://ims.example/token?client_secret=x", "query or fragment"),
        ("ims.example/token", "absolute URL"),
        ("https://ims.example:99999/token", "invalid port"),
        ("ftp://ims.example/token", "must be https"),
    ],
)
def test_malformed_urls_are_errors(url: str, reason: str) -> None:
    """URLs with credentials, a query, no host, a bad port or another scheme are refused."""
    assert reason in problem(ims_url=url)


def test_registration_url_must_name_a_registration_resource() -> None:
    """The registration URL must be the resource, not e.g. the journal URL pasted by mistake."""
    journal = "https://events-va6.adobe.io/events/organizations/1/integrations/2/3"
    assert "registration resource" in problem(**CREDENTIALS, registration_url=journal)
    resource = "https://api.adobe.io/events/23294/4566/4567/registrations/d1c2b3a4"
    assert AdobeSettings(**CREDENTIALS, registration_url=resource).registration_url == resource


@pytest.mark.parametrize("field", ["journal_url", "registration_url"])
def test_pull_features_need_the_credentials(field: str) -> None:
    """A journal or registration URL without IMS credentials is an error."""
    url = "https://api.adobe.io/events/1/2/3/registrations/4"
    assert f"AEP_EXPORTER_{field.upper()} needs the IMS credentials" in problem(**{field: url})


@pytest.mark.parametrize(
    "field", ["flow_refresh_interval", "reconcile_interval", "registration_poll_interval"]
)
def test_cadences_take_durations_and_zero_for_off(field: str) -> None:
    """Cadences parse Prometheus durations, accept 0 as off and refuse sub-second values."""
    assert getattr(AdobeSettings(**{field: "90s"}), field) == 90
    assert getattr(AdobeSettings(**{field: "1h30m"}), field) == 5400
    assert getattr(AdobeSettings(**{field: "0"}), field) == 0
    assert "at least 1s" in problem(**{field: "500ms"})
    assert "not a duration" in problem(**{field: "fast"})


def test_journal_start_is_oldest_latest_or_a_seek_within_retention() -> None:
    """journal_start takes oldest, latest, or a duration up to the journal's 7 days."""
    assert AdobeSettings(journal_start="latest").journal_start == "latest"
    assert AdobeSettings(journal_start="2d").journal_start == 172800
    assert "at most 7d" in problem(journal_start="8d")
    assert "not a duration" in problem(journal_start="newest")


def test_reconcile_window_must_be_positive() -> None:
    """A reconcile window of 0 is refused."""
    assert "greater than 0" in problem(reconcile_window="0s")


def test_sandboxes_are_a_deduplicated_comma_list_of_lowercase_names() -> None:
    """Sandboxes split on commas, keep their order without repeats, and must be lowercase."""
    assert AdobeSettings(sandboxes="prod, dev-1,prod").sandboxes == ["prod", "dev-1"]
    assert "lowercase sandbox name" in problem(sandboxes="Prod")


def test_org_id_must_be_an_ims_organization() -> None:
    """An org id that is not `...@AdobeOrg` (e.g. the numeric console org) is refused."""
    assert "@AdobeOrg" in problem(**{**CREDENTIALS, "ims_org_id": "23294"})


def test_secret_file_is_read_at_validation(tmp_path: Path) -> None:
    """The secret may come from a file, read (and stripped) when the settings are validated."""
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n", encoding="utf-8")
    values = {k: v for k, v in CREDENTIALS.items() if k != "ims_client_secret"}
    settings = AdobeSettings(**values, ims_client_secret_file=secret_file)
    assert settings.ims_client_secret.get_secret_value() == SECRET
    assert settings.enabled


def test_secret_and_secret_file_together_are_an_error(tmp_path: Path) -> None:
    """Setting the secret and its file at once is refused."""
    secret_file = tmp_path / "secret"
    secret_file.write_text("other", encoding="utf-8")
    assert "not both" in problem(**CREDENTIALS, ims_client_secret_file=secret_file)


def test_unreadable_secret_file_is_an_error(tmp_path: Path) -> None:
    """A missing secret file is refused with the reason."""
    message = problem(ims_client_secret_file=tmp_path / "absent")
    assert "cannot read AEP_EXPORTER_IMS_CLIENT_SECRET_FILE: No such file" in message


def test_secret_never_appears_in_repr_or_errors(tmp_path: Path) -> None:
    """Neither repr nor a validation error shows the secret, from a value or from a file."""
    settings = AdobeSettings(**CREDENTIALS)
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings.model_dump())
    assert SECRET not in problem(**{**CREDENTIALS, "ims_org_id": "bad"})
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET, encoding="utf-8")
    assert SECRET not in problem(ims_client_secret="x", ims_client_secret_file=secret_file)


def test_fields_mix_into_the_service_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mixed into a pydantic-settings class, the fields read their AEP_EXPORTER_ env vars."""

    class Mixed(BaseSettings, AdobeSettings):
        model_config = SettingsConfigDict(env_prefix="AEP_EXPORTER_", extra="forbid", frozen=True)

    monkeypatch.setenv("AEP_EXPORTER_IMS_CLIENT_ID", "client-1")
    monkeypatch.setenv("AEP_EXPORTER_IMS_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("AEP_EXPORTER_IMS_SCOPES", "openid,AdobeID")
    monkeypatch.setenv("AEP_EXPORTER_IMS_ORG_ID", "ABC123@AdobeOrg")
    monkeypatch.setenv("AEP_EXPORTER_SANDBOXES", "prod,dev")
    monkeypatch.setenv("AEP_EXPORTER_RECONCILE_INTERVAL", "0")
    settings = Mixed()
    assert settings.enabled
    assert settings.ims_scopes == ["openid", "AdobeID"]
    assert settings.sandboxes == ["prod", "dev"]
    assert settings.reconcile_interval == 0
    monkeypatch.delenv("AEP_EXPORTER_IMS_ORG_ID")
    with pytest.raises(ValidationError, match="AEP_EXPORTER_IMS_ORG_ID missing"):
        Mixed()
