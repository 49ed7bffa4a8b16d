"""The state store the settings name: SQLite (one process) or PostgreSQL (shared by replicas)."""

from __future__ import annotations

from exporter.config import Settings
from exporter.leadership import LeaderLock, SoleLeader
from exporter.stores.postgres import PostgresStore
from exporter.stores.postgres_schema import AdvisoryLeaderLock
from exporter.stores.protocol import StateStore
from exporter.stores.sqlite import SQLiteStore
from exporter.stores.urls import redact_url


def build_store(settings: Settings) -> StateStore:
    """PostgresStore when AEP_EXPORTER_STATE_URL is set, else the SQLite file at the state path."""
    buckets = len(settings.duration_buckets) + 1
    if settings.shared_state:
        return PostgresStore(settings.state_url.get_secret_value(), bucket_count=buckets)
    return SQLiteStore(settings.state_path, bucket_count=buckets)


def build_leader_lock(settings: Settings) -> LeaderLock:
    """A PostgreSQL advisory lock shared by the replicas; with SQLite the one process leads."""
    if settings.shared_state:
        return AdvisoryLeaderLock(settings.state_url.get_secret_value())
    return SoleLeader()


def store_location(settings: Settings) -> str:
    """Where the state lives, as logs may show it (password masked)."""
    if settings.shared_state:
        return redact_url(settings.state_url.get_secret_value())
    return str(settings.state_path)
