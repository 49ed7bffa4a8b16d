"""The replicas group: a shared PostgreSQL state store and how often replicas converge."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from exporter.config.base import Duration, SettingsGroup


class ReplicaSettings(SettingsGroup):
    """Where the shared state lives (empty: the SQLite file), and the replicas' sync cadence."""

    state_url: SecretStr = Field(
        SecretStr(""), description="postgresql://… shared by replicas; empty: SQLite state path"
    )
    replica_sync_interval: Duration = Field(
        1.0, gt=0, le=60, description="how often a replica reads others' committed changes"
    )

    @field_validator("state_url")
    @classmethod
    def _url(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        if url and urlsplit(url).scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql:// URL (or empty for the SQLite state path)")
        return value

    @property
    def shared_state(self) -> bool:
        """Whether the state lives in PostgreSQL, shared by replicas."""
        return bool(self.state_url.get_secret_value())
