"""deploy/pull-only.env: every name a setting, and the settings it makes are pull only."""

from __future__ import annotations

from pathlib import Path

from exporter.config import ENV_PREFIX

from .conftest import DEPLOY, load_settings_from, unknown_setting_names

ENV_FILE = DEPLOY / "pull-only.env"


def read_env_file(path: Path) -> dict[str, str]:
    """`NAME=value` lines as docker compose's env_file reads them (comments and blanks skipped)."""
    env = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            env[name.strip()] = value
    return env


def test_the_pull_only_env_file_names_only_settings_and_turns_the_webhook_off(
    tmp_path: Path,
) -> None:
    """The example loads as the exporter would load it: no webhook route, the journal and
    reconciliation on, de-duplication keys kept 8 days."""
    env = read_env_file(ENV_FILE)
    assert unknown_setting_names(env) == []
    secret = tmp_path / "ims-secret"
    secret.write_text("placeholder\n", encoding="utf-8")
    env[f"{ENV_PREFIX}IMS_CLIENT_SECRET_FILE"] = str(secret)
    settings = load_settings_from(env, tmp_path)
    assert settings.webhook_path == ""
    assert settings.journal_on
    assert settings.reconcile_on
    assert settings.dedup_window == 8 * 86400
    assert [source.value for source in settings.sources] == ["journal", "flow_service"]
