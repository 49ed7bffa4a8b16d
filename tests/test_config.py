"""Settings: groups, the CLI loader as the one reader of the environment, readable errors."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.cli import build_parser
from exporter.cli.options import REPEATED_FLAGS, settings_from_args
from exporter.config import SETTING_FIELDS, ConfigError, Settings, SettingsGroup, load_settings

AMBIENT = {
    "AEP_EXPORTER_REQUIRE_RECIPIENT": "true",
    "AEP_EXPORTER_CLIENT_IDS": "x",
    "AEP_EXPORTER_MAX_FLOWS": "1",
}


@pytest.fixture
def ambient(monkeypatch: pytest.MonkeyPatch) -> None:
    """Export settings in the process environment, as a developer's shell might."""
    for name, value in AMBIENT.items():
        monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("ambient")
def test_settings_built_in_code_ignore_the_environment(
    make_settings: Callable[..., Settings],
) -> None:
    """Exported AEP_EXPORTER_* variables change nothing for Settings built in code or by tests."""
    for settings in (make_settings(), Settings(), Settings.model_validate({})):
        assert settings.require_recipient is False
        assert settings.client_ids == []
        assert settings.max_flows == 10_000


@pytest.mark.usefixtures("ambient")
def test_cli_loader_reads_the_environment_and_flags_win(tmp_path: Path) -> None:
    """The CLI's loader takes each exported variable, and a flag beats its variable."""
    state = str(tmp_path / "state.db")
    args = build_parser().parse_args(["check-config", "--state-path", state])
    settings = settings_from_args(args)
    assert settings.require_recipient is True
    assert settings.client_ids == ["x"]
    assert settings.max_flows == 1
    argv = ["check-config", "--state-path", state, "--max-flows", "5", "--client-id", "y"]
    flagged = settings_from_args(build_parser().parse_args(argv))
    assert flagged.max_flows == 5
    assert flagged.client_ids == ["y"]
    assert flagged.require_recipient is True


@pytest.mark.usefixtures("ambient")
def test_load_settings_reads_only_the_mapping_it_is_given() -> None:
    """load_settings reads the mapping passed (names in any case), never os.environ itself."""
    settings = load_settings({"aep_exporter_log_level": "DEBUG", "OTHER": "1"}, max_json_depth=9)
    assert settings.log_level == "DEBUG"
    assert settings.max_json_depth == 9
    assert settings.max_flows == 10_000
    assert load_settings(os.environ).max_flows == 1


def test_secret_file_is_read_through_the_loader(tmp_path: Path) -> None:
    """AEP_EXPORTER_CLIENT_SECRET_FILE supplies the client secret, stripped."""
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n", encoding="utf-8")
    settings = load_settings({"AEP_EXPORTER_CLIENT_SECRET_FILE": str(secret)})
    assert settings.client_secret.get_secret_value() == "s3cret"


def test_invalid_settings_give_one_line_naming_each_variable_in_listing_order() -> None:
    """Every problem is named by its env var, in the order check-config lists the settings."""
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {"AEP_EXPORTER_DURATION_BUCKETS": "3,2", "AEP_EXPORTER_MAX_FLOWS": "0"},
            listen_address="nope",
        )
    assert str(caught.value) == (
        "invalid configuration: AEP_EXPORTER_LISTEN_ADDRESS: listen address 'nope' must be "
        "host:port; AEP_EXPORTER_MAX_FLOWS: Input should be greater than or equal to 1; "
        "AEP_EXPORTER_DURATION_BUCKETS: buckets must be strictly increasing"
    )


def test_every_group_field_is_listed_once() -> None:
    """Groups share no field name, and each of their fields is a listed setting."""
    groups = [g for g in Settings.__mro__[1:] if issubclass(g, SettingsGroup)]
    names = [name for group in groups if group is not SettingsGroup for name in group.model_fields]
    assert len(names) == len(set(names))
    assert sorted(names) == sorted(SETTING_FIELDS) == sorted(Settings.model_fields)


def test_every_setting_has_its_flag() -> None:
    """Each setting is a `--<name-with-dashes>` flag of serve (lists: a repeated singular flag)."""
    parser = build_parser()
    assert REPEATED_FLAGS == {"client_ids": "--client-id", "sandboxes": "--sandbox"}
    for name, info in SETTING_FIELDS.items():
        flag = REPEATED_FLAGS.get(name, "--" + name.replace("_", "-"))
        value = [] if info.annotation is bool else ["1"]
        args = parser.parse_args(["serve", flag, *value])
        assert getattr(args, name) is not None, flag
