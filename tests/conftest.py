"""Shared fixtures: payload files, settings on a temporary store, and the real app on loopback."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from exporter.config import Settings
from exporter.http.app import EXPORTER, create_app
from exporter.service import Exporter
from tests.postgres import PostgresCluster

FIXTURES = Path(__file__).parent / "fixtures"
SUCCESS_FLOW = "1c6f1047-dcaf-48fe-af10-47dcaf08feaf"
FAILURE_FLOW = "cf4fce79-8822-456d-8fce-798822556dc6"


def fixture_bytes(name: str) -> bytes:
    """A payload sample from tests/fixtures, byte for byte."""
    return (FIXTURES / name).read_bytes()


class Clock:
    """A settable wall clock for the app (receipt times, TTLs)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    """A pinned clock."""
    return Clock()


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings on a temporary state file; unsigned mode unless told otherwise; no environment."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "state_path": tmp_path / "state.db",
            "insecure_accept_unsigned": True,
        }
        values.update(overrides)
        return Settings(**values)

    return make


AppClient = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[tuple[AppClient, CollectorRegistry, Exporter]]]


@pytest.fixture
def make_client(
    aiohttp_client: Callable[..., Awaitable[AppClient]],
    make_settings: Callable[..., Settings],
    clock: Clock,
) -> MakeClient:
    """Start the real app factory with a fresh registry on loopback."""

    async def make(
        settings: Settings | None = None, **overrides: Any
    ) -> tuple[AppClient, CollectorRegistry, Exporter]:
        registry = CollectorRegistry()
        app = create_app(settings or make_settings(**overrides), registry, clock=clock)
        client = await aiohttp_client(app)
        return client, registry, app[EXPORTER]

    return make


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster on loopback for the session (skipped without one)."""
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()
