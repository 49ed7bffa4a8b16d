"""Fixtures for delivery verification: RSA key pairs, a loopback key host, the app behind them."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from multidict import CIMultiDict
from prometheus_client import CollectorRegistry
from pytest_aiohttp import AiohttpServer

from exporter.config import Settings
from exporter.service import Exporter
from exporter.verify.keys import PublicKeyStore
from tests.conftest import AppClient, MakeClient

KEY1_PATH = "/prod/keys/pub-key-one.pem"
KEY2_PATH = "/prod/keys/pub-key-two.pem"
# Served by the key host with 404.
GONE_PATH = "/prod/keys/pub-key-gone.pem"
# Long enough never to end during a test; a slow answer is released at teardown.
SLOW_ANSWER_BOUND = 5.0
# Longest wait for the exporter to answer a stalled raw delivery (its read timeout is shorter).
STALLED_ANSWER_BOUND = 5.0


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An RSA key pair standing in for one of Adobe I/O Events' signing keys."""

    private: rsa.RSAPrivateKey

    @property
    def public_pem(self) -> bytes:
        """The public key as SPKI PEM, the format Adobe serves (protocol notes §1.3.1)."""
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, body: bytes) -> str:
        """Base64 RSASSA-PKCS1-v1_5 SHA-256 signature of the bytes, as Adobe sends it."""
        return base64.b64encode(
            self.private.sign(body, padding.PKCS1v15(), hashes.SHA256())
        ).decode()


@dataclass(frozen=True, slots=True)
class SigningKeys:
    """Adobe's two current keys and a stranger's key."""

    one: SigningKey
    two: SigningKey
    stranger: SigningKey


@pytest.fixture(scope="session")
def signing_keys() -> SigningKeys:
    """Three 2048-bit RSA key pairs, generated once per session (it takes a while)."""
    return SigningKeys(
        *(SigningKey(rsa.generate_private_key(public_exponent=65537, key_size=2048)) for _ in "123")
    )


ServerMode = Literal["up", "slow", "garbage", "not_found", "redirect"]


class KeyServer:
    """A loopback stand-in for static.adobeioevents.com that counts requests per path."""

    def __init__(self, aiohttp_server: AiohttpServer, keys: dict[str, bytes]) -> None:
        self._aiohttp_server = aiohttp_server
        self.keys = keys
        self.requests: Counter[str] = Counter()
        self.mode: ServerMode = "up"
        # Seconds every answer waits, to make concurrent fetches overlap.
        self.delay = 0.0
        # Answer 503 to this many requests before behaving as `mode` says.
        self.fail_next = 0
        # Set when any request arrives; a slow answer waits for `release`.
        self.request_arrived = asyncio.Event()
        self.release = asyncio.Event()
        self._server: TestServer | None = None
        self._port: int | None = None

    @property
    def base_url(self) -> str:
        """Scheme, host and port, as AEP_EXPORTER_PUBLIC_KEY_BASE_URL takes them."""
        assert self._port is not None
        return f"http://127.0.0.1:{self._port}"

    @property
    def total_requests(self) -> int:
        """Requests received on any path."""
        return sum(self.requests.values())

    async def start(self) -> None:
        """Listen (again, on the same port once it has been chosen)."""
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._answer)
        self._server = await self._aiohttp_server(app, port=self._port)
        self._port = self._server.port

    async def stop(self) -> None:
        """Stop listening: connections are refused until start()."""
        assert self._server is not None
        await self._server.close()

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        self.requests[request.raw_path] += 1
        self.request_arrived.set()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_next:
            self.fail_next -= 1
            return web.Response(status=503)
        if self.mode == "slow":
            async with asyncio.timeout(SLOW_ANSWER_BOUND):
                await self.release.wait()
        if self.mode == "garbage":
            return web.Response(body=b"<html>this is not a key</html>")
        if self.mode == "redirect":
            raise web.HTTPFound("/elsewhere" + request.path)
        pem = self.keys.get(request.path)
        if self.mode == "not_found" or pem is None:
            return web.Response(status=404)
        return web.Response(body=pem, content_type="application/x-pem-file")


@pytest.fixture
async def key_server(
    aiohttp_server: AiohttpServer, signing_keys: SigningKeys
) -> AsyncIterator[KeyServer]:
    """The key host serving key one and key two at KEY1_PATH and KEY2_PATH."""
    server = KeyServer(
        aiohttp_server,
        {KEY1_PATH: signing_keys.one.public_pem, KEY2_PATH: signing_keys.two.public_pem},
    )
    await server.start()
    yield server
    server.release.set()


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock for the key cache."""
    return FakeClock()


@pytest.fixture
def fetches() -> list[str]:
    """The on_fetch results the key stores of a test reported, in order."""
    return []


StoreFactory = Callable[..., PublicKeyStore]


@pytest.fixture
async def make_store(
    key_server: KeyServer, clock: FakeClock, fetches: list[str]
) -> AsyncIterator[StoreFactory]:
    """Build key stores against the loopback key host; they are closed at teardown."""
    stores: list[PublicKeyStore] = []

    def make(
        *,
        pinned_dir: Path | None = None,
        cache_ttl: float = 3600.0,
        fetch_timeout: float = 2.0,
        max_unknown_fetches: int = 8,
    ) -> PublicKeyStore:
        store = PublicKeyStore(
            base_url=key_server.base_url,
            pinned_dir=pinned_dir,
            cache_ttl=cache_ttl,
            fetch_timeout=fetch_timeout,
            max_unknown_fetches=max_unknown_fetches,
            on_fetch=fetches.append,
            clock=clock,
        )
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


def signed_headers(*pairs: tuple[str, str] | None, **extra: str) -> CIMultiDict[str]:
    """Delivery headers carrying (signature, key path) pairs 1 and 2; None leaves a pair out."""
    headers: CIMultiDict[str] = CIMultiDict()
    # Adobe's capitalisation differs from ours: lookups must not care.
    for number, pair in enumerate(pairs, start=1):
        if pair is not None:
            headers[f"X-Adobe-Digital-Signature-{number}"] = pair[0]
            headers[f"X-Adobe-Public-Key{number}-Path"] = pair[1]
    for name, value in extra.items():
        headers[name.replace("_", "-")] = value
    return headers


@pytest.fixture
def pinned_dir(tmp_path: Path) -> Path:
    """An empty directory for pinned PEM files."""
    directory = tmp_path / "pinned"
    directory.mkdir()
    return directory


@pytest.fixture
def make_verified_client(make_client: MakeClient, key_server: KeyServer) -> MakeClient:
    """Start the real app with verification on, fetching keys from the loopback key host."""

    async def make(
        settings: Settings | None = None, **overrides: Any
    ) -> tuple[AppClient, CollectorRegistry, Exporter]:
        values: dict[str, Any] = {
            "insecure_accept_unsigned": False,
            "public_key_base_url": key_server.base_url,
        }
        values.update(overrides)
        return await make_client(settings, **values)

    return make


class StalledDelivery:
    """A raw HTTP/1.1 POST whose body arrives only as fast as the test sends it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        """Send more of the body."""
        self.writer.write(data)
        async with asyncio.timeout(STALLED_ANSWER_BOUND):
            await self.writer.drain()

    async def status(self, bound: float = STALLED_ANSWER_BOUND) -> int:
        """The status code of the answer, waited for at most `bound` seconds."""
        async with asyncio.timeout(bound):
            status_line = await self.reader.readline()
        return int(status_line.split()[1])

    async def close(self) -> None:
        """Hang up."""
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


class OpenStalled(Protocol):
    """Opens a raw delivery to a test client's server."""

    async def __call__(
        self,
        client: AppClient,
        *,
        content_length: int = 1000,
        first_bytes: bytes = b'{"event":',
        headers: Mapping[str, str] | None = None,
    ) -> StalledDelivery:
        """Send the request head and `first_bytes` of a body of `content_length` bytes."""


@pytest.fixture
async def open_stalled() -> AsyncIterator[OpenStalled]:
    """Open raw deliveries that stall after their first bytes; they hang up at teardown."""
    opened: list[StalledDelivery] = []

    async def open_one(
        client: AppClient,
        *,
        content_length: int = 1000,
        first_bytes: bytes = b'{"event":',
        headers: Mapping[str, str] | None = None,
    ) -> StalledDelivery:
        host, port = client.server.host, client.server.port
        assert port is not None
        async with asyncio.timeout(STALLED_ANSWER_BOUND):
            reader, writer = await asyncio.open_connection(host, port)
        delivery = StalledDelivery(reader, writer)
        opened.append(delivery)
        head = {
            "Host": f"{host}:{port}",
            "Content-Type": "application/json",
            "Content-Length": str(content_length),
            **(headers or {}),
        }
        lines = "".join(f"{name}: {value}\r\n" for name, value in head.items())
        await delivery.send(f"POST /webhook HTTP/1.1\r\n{lines}\r\n".encode() + first_bytes)
        return delivery

    yield open_one
    for delivery in opened:
        await delivery.close()


@pytest.fixture
async def unsigned_client(make_client: MakeClient) -> tuple[AppClient, CollectorRegistry, Exporter]:
    """The real app in insecure (unsigned) mode, one for all examples of a property test."""
    return await make_client()
