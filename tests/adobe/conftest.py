"""Fixtures for the Adobe side: the loopback fake, a settable clock, clients, tokens, settings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from exporter.adobe.client import AdobeApi, AdobeClient, RequestResult
from exporter.adobe.fake import FakeAdobe
from exporter.adobe.ims import TokenProvider

# Short enough that a hanging answer costs a test little, long enough for a loaded CI machine.
TEST_TIMEOUT = 1.0


class WallClock:
    """A wall clock (epoch seconds) that moves only when told to."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds


@pytest.fixture
def clock() -> WallClock:
    """One clock for the fake's token expiry and the provider's cache."""
    return WallClock()


@pytest.fixture
async def fake(clock: WallClock) -> AsyncIterator[FakeAdobe]:
    """The fake Adobe on a loopback port, closed at teardown."""
    server = FakeAdobe(clock=clock)
    await server.start()
    yield server
    await server.close()


@pytest.fixture
def counted() -> list[tuple[AdobeApi, RequestResult]]:
    """Every (api, result) the clients of a test counted, in order."""
    return []


MakeAdobeClient = Callable[..., AdobeClient]


@pytest.fixture
async def make_adobe_client(
    clock: WallClock, counted: list[tuple[AdobeApi, RequestResult]]
) -> AsyncIterator[MakeAdobeClient]:
    """Build clients that count into `counted`; they are closed at teardown."""
    clients: list[AdobeClient] = []

    def make(**overrides: Any) -> AdobeClient:
        values: dict[str, Any] = {
            "on_request": lambda api, result: counted.append((api, result)),
            "timeout": TEST_TIMEOUT,
            "clock": clock,
        }
        values.update(overrides)
        client = AdobeClient(**values)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
def adobe_client(make_adobe_client: MakeAdobeClient) -> AdobeClient:
    """A client with the test defaults."""
    return make_adobe_client()


@pytest.fixture
def expiries() -> list[float]:
    """Every on_expiry timestamp the token providers of a test reported."""
    return []


MakeTokens = Callable[..., TokenProvider]


@pytest.fixture
async def make_tokens(
    fake: FakeAdobe, adobe_client: AdobeClient, clock: WallClock, expiries: list[float]
) -> AsyncIterator[MakeTokens]:
    """Build token providers for the fake's credentials; closed at teardown."""
    providers: list[TokenProvider] = []

    def make(**overrides: Any) -> TokenProvider:
        values: dict[str, Any] = {
            "url": fake.ims_url,
            "client_id": fake.client_id,
            "client_secret": SecretStr(fake.client_secret),
            "scopes": sorted(fake.scopes),
            "org_id": fake.org_id,
            "on_expiry": expiries.append,
            "clock": clock,
            # Mid-range jitter, so back-off delays are exact.
            "jitter": lambda: 0.5,
        }
        values.update(overrides)
        provider = TokenProvider(adobe_client, **values)
        providers.append(provider)
        return provider

    yield make
    for provider in providers:
        await provider.close()


@pytest.fixture
def tokens(make_tokens: MakeTokens) -> TokenProvider:
    """A token provider for the fake's credentials."""
    return make_tokens()


def adobe_settings(fake: FakeAdobe, **overrides: Any) -> dict[str, Any]:
    """Settings overrides that point every Adobe feature at the fake (reconciliation off)."""
    values: dict[str, Any] = {
        "ims_url": fake.ims_url,
        "ims_client_id": fake.client_id,
        "ims_client_secret": fake.client_secret,
        "ims_scopes": sorted(fake.scopes),
        "ims_org_id": fake.org_id,
        "platform_url": fake.base_url,
        "sandboxes": ["prod"],
        "reconcile_interval": 0,
        # Long: the tests drive refreshes themselves after the one at start.
        "flow_refresh_interval": 3600,
    }
    values.update(overrides)
    return values


async def until(condition: Callable[[], object], what: str, limit: float = 10.0) -> None:
    """Wait, at most `limit` seconds, until `condition()` is true."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit:g}s waiting for {what}")
        await asyncio.sleep(0.02)


def flow_samples(registry: CollectorRegistry, name: str) -> dict[str, tuple[dict[str, str], float]]:
    """The samples of one per-flow metric, by flow id."""
    return {
        sample.labels["flow_id"]: (sample.labels, sample.value)
        for family in registry.collect()
        for sample in family.samples
        if sample.name == name
    }
