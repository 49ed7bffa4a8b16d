"""Hostile senders against a running exporter on loopback, for the tests and the benchmark.

Each scenario is bounded in requests and time and returns what it measured: the tests assert
generous bounds on it, `python -m tests.benchmarks hostile` prints it against the targets.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from tests.webconfig.conftest import basic_auth

# Longest any one answer is waited for: past it, the answer counts as none (status 0).
ANSWER_TIMEOUT = 15.0
_MEMBER = 64 * 2**20  # decoded bytes of one gzip member of a bomb
Delivery = tuple[bytes, Mapping[str, str]]  # a body and its (signature) headers


@dataclass(frozen=True, slots=True)
class Answer:
    """A status (0: no answer within ANSWER_TIMEOUT) and the seconds it took."""

    status: int
    seconds: float


def gzip_bomb(decoded_bytes: int = 2**30) -> bytes:
    """A gzip body of about 1 MB per GiB that inflates to `decoded_bytes` of zeros.

    Concatenated members of 64 MiB each, as gzip allows: cheap to make, as costly to inflate.
    """
    member = gzip.compress(bytes(_MEMBER), compresslevel=9)
    return member * max(1, decoded_bytes // _MEMBER)


async def timed(
    client: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """One request, timed to the last byte of its answer."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(ANSWER_TIMEOUT):
            async with client.request(method, url, data=data, headers=headers) as response:
                await response.read()
                status = response.status
    except (TimeoutError, aiohttp.ClientError):
        status = 0
    return Answer(status, time.perf_counter() - started)


def session() -> aiohttp.ClientSession:
    """A client session that opens one connection per request (no pool limit, no keep-alive)."""
    # One connection per request (no pool limit, no keep-alive): as many senders as requests.
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    return aiohttp.ClientSession(connector=connector, auto_decompress=False)


@dataclass(frozen=True, slots=True)
class BombFigures:
    """Bombs sent at once beside one delivery and one health probe."""

    bombs: list[Answer]
    delivery: Answer
    healthz: Answer


async def bombs_beside_a_delivery(
    base_url: str, delivery: Delivery, *, bombs: int = 20, head_start: float = 0.3
) -> BombFigures:
    """`bombs` concurrent gzip bombs; `head_start` s later, a real delivery and /healthz."""
    bomb = gzip_bomb()
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    async with session() as client:
        sent = [
            asyncio.create_task(
                timed(client, "POST", base_url + "/webhook", data=bomb, headers=headers)
            )
            for _ in range(bombs)
        ]
        await asyncio.sleep(head_start)
        body, signed = delivery
        legit, healthz = await asyncio.gather(
            timed(client, "POST", base_url + "/webhook", data=body, headers=signed),
            timed(client, "GET", base_url + "/healthz"),
        )
        return BombFigures(list(await asyncio.gather(*sent)), legit, healthz)


@contextlib.asynccontextmanager
async def tricklers(port: int, count: int, *, settle: float = 1.0) -> AsyncIterator[None]:
    """`count` connections that send a delivery's head and one byte of its body, then stall.

    They are held open (for at most ANSWER_TIMEOUT) while the block runs, then hung up.
    """
    head = (
        b"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n{"
    )
    writers: list[asyncio.StreamWriter] = []
    try:
        async with asyncio.timeout(ANSWER_TIMEOUT):
            for _ in range(count):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writers.append(writer)
                writer.write(head)
                await writer.drain()
            await asyncio.sleep(settle)  # until the exporter has read every head
        yield
    finally:
        for writer in writers:
            writer.close()
        for writer in writers:
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def deliveries_beside_tricklers(
    base_url: str, port: int, deliveries: Sequence[Delivery], *, trickling: int = 300
) -> list[Answer]:
    """Real deliveries, one after another, while `trickling` connections stall their bodies."""
    async with tricklers(port, trickling), session() as client:
        return [
            await timed(client, "POST", base_url + "/webhook", data=body, headers=headers)
            for body, headers in deliveries
        ]


class CountingKeyHost:
    """A loopback key host that has no key at all (404) and counts the requests it gets."""

    def __init__(self) -> None:
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def _answer(self, request: web.Request) -> web.Response:
        self.requests += 1
        return web.Response(status=404)

    async def __aenter__(self) -> CountingKeyHost:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._answer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


def forged_delivery(number: int, body: bytes) -> Delivery:
    """A delivery 'signed' with random bytes under two made-up, Adobe-shaped key paths."""
    headers = {"Content-Type": "application/json"}
    for key in (1, 2):
        headers[f"x-adobe-digital-signature-{key}"] = base64.b64encode(os.urandom(256)).decode()
        headers[f"x-adobe-public-key{key}-path"] = f"/prod/keys/pub-key-forged{number}x{key}.pem"
    return body, headers


async def forged_key_paths(
    base_url: str, body: bytes, *, requests: int = 300, concurrency: int = 50
) -> tuple[Counter[int], float]:
    """`requests` forged deliveries, each naming two new key paths: statuses and seconds."""
    gate = asyncio.Semaphore(concurrency)

    async def send(number: int) -> Answer:
        data, headers = forged_delivery(number, body)
        async with gate:
            return await timed(client, "POST", base_url + "/webhook", data=data, headers=headers)

    started = time.perf_counter()
    async with session() as client:
        answers = await asyncio.gather(*(send(number) for number in range(requests)))
    return Counter(answer.status for answer in answers), time.perf_counter() - started


@dataclass(frozen=True, slots=True)
class AuthFloodFigures:
    """Wrong passwords for one user at once, beside two scrapes of /metrics."""

    flood: list[Answer]
    first_login: Answer  # another user, who has not logged in before
    known_user: Answer  # the flooded user with the right password, verified before the flood


async def auth_flood_beside_scrapes(
    base_url: str,
    *,
    known: tuple[str, str],
    first: tuple[str, str],
    attempts: int = 100,
    head_start: float = 0.3,
) -> AuthFloodFigures:
    """`attempts` concurrent wrong passwords for the known user; then a first and a known login."""
    url = base_url + "/metrics"
    async with session() as client:
        login = await timed(client, "GET", url, headers=basic_auth(*known))
        if login.status != 200:
            raise AssertionError(f"the known user's login before the flood got {login.status}")
        flood = [
            asyncio.create_task(
                timed(client, "GET", url, headers=basic_auth(known[0], f"wrong-{number}"))
            )
            for number in range(attempts)
        ]
        await asyncio.sleep(head_start)
        first_login, known_user = await asyncio.gather(
            timed(client, "GET", url, headers=basic_auth(*first)),
            timed(client, "GET", url, headers=basic_auth(*known)),
        )
        return AuthFloodFigures(list(await asyncio.gather(*flood)), first_login, known_user)
