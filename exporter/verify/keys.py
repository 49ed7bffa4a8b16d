"""Adobe I/O Events signing keys: fetched by header path from the key host, cached, or pinned."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import aiohttp
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from yarl import URL

from exporter.domain import ExporterError
from exporter.metrics.families import KeyFetchResult

log = logging.getLogger(__name__)

_V = TypeVar("_V")

# Adobe sends paths like /prod/keys/pub-key-Ptc2pD9vT9.pem (protocol notes §1.2). Its own libraries
# concatenate host and header path unchecked (protocol notes §1.3.2); we refuse anything that could
# change the host or escape the key directory: '@', '\', '%', ':', '?', '#' are simply not in
# the allowed alphabet, and `..`, `//` and dot-segments are refused on top.
_KEY_PATH = re.compile(r"/[A-Za-z0-9/_.-]*[A-Za-z0-9_-]\.pem")
MAX_KEY_PATH_LENGTH = 256
# A PEM RSA public key is well under 1 KiB; anything this large is not a key.
MAX_KEY_BYTES = 64 * 1024
# Adobe asks for "a retry mechanism ... in case of any transient error" (protocol notes §1.3.1).
FETCH_ATTEMPTS = 2
RETRY_DELAY = 0.1
# A failed fetch is remembered this long, so a burst of deliveries during a key-host outage
# answers 503 at once instead of each waiting for its own timeout.
NEGATIVE_CACHE_SECONDS = 2.0
# Header paths are attacker-controlled: bound what they can make us remember.
MAX_CACHED_KEYS = 32
MAX_REMEMBERED_FAILURES = 256
# Seconds a warning that the bound on unknown key fetches was reached stays quiet for.
BOUND_WARNING_INTERVAL = 60.0


class KeyUnavailable(ExporterError):
    """The key could not be had: host unreachable, timeout, non-200 answer or not an RSA PEM."""


class KeyPathRejected(ExporterError):
    """The header's key path is not a plain path under the key host; nothing was fetched."""


class _TransientError(Exception):
    """A fetch attempt failed in a way another attempt may not."""


def is_valid_key_path(path: str) -> bool:
    """Whether a header key path is safe to append to the key host's base URL."""
    if len(path) > MAX_KEY_PATH_LENGTH or not _KEY_PATH.fullmatch(path):
        return False
    if ".." in path or "//" in path:
        return False
    # No segment may start with a dot ("/./x.pem", hidden files).
    return "/." not in path


def load_rsa_public_key(pem: bytes, *, source: str) -> RSAPublicKey:
    """Parse a PEM public key (SPKI or PKCS#1); ValueError unless it is an RSA key."""
    try:
        key = load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"{source}: not a PEM public key") from exc
    if not isinstance(key, RSAPublicKey):
        raise ValueError(f"{source}: not an RSA public key")  # noqa: TRY004 - bad content
    return key


def _load_pinned(directory: Path) -> dict[str, RSAPublicKey]:
    if not directory.is_dir():
        raise ExporterError(f"pinned keys directory {directory} is not a directory")
    keys: dict[str, RSAPublicKey] = {}
    for file in sorted(directory.glob("*.pem")):
        try:
            keys[file.name] = load_rsa_public_key(file.read_bytes(), source=str(file))
        except OSError as exc:
            raise ExporterError(f"cannot read pinned key {file}: {exc.strerror}") from None
        except ValueError as exc:
            raise ExporterError(f"bad pinned key {exc}") from None
    log.info("pinned public keys loaded", extra={"dir": str(directory), "names": list(keys)})
    return keys


class PublicKeyStore:
    """Signature public keys by header path: pinned, cached for at most `cache_ttl`, or fetched.

    Pinned keys are matched by file name (the path's last segment), the same key Adobe's own
    library caches under (protocol notes §1.3.2), so rotating Adobe's directory does not unpin them.
    """

    def __init__(
        self,
        *,
        base_url: str,
        pinned_dir: Path | None,
        cache_ttl: float,
        fetch_timeout: float,
        max_unknown_fetches: int = 8,
        on_fetch: Callable[[str], None] = lambda result: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._pinned = _load_pinned(pinned_dir) if pinned_dir is not None else {}
        self._cache_ttl = cache_ttl
        self._fetch_timeout = fetch_timeout
        self._on_fetch = on_fetch
        self._clock = clock
        self._cached: dict[str, tuple[float, RSAPublicKey]] = {}  # path -> (expires at, key)
        self._failed: dict[str, float] = {}  # path -> retry not before
        self._in_flight: dict[str, asyncio.Task[RSAPublicKey]] = {}
        self._session: aiohttp.ClientSession | None = None
        # Unknown paths (never fetched successfully) are what a forger makes up, one per request:
        # at most this many such fetches start per NEGATIVE_CACHE_SECONDS and run at once, so
        # forged paths cannot multiply outbound traffic. Paths of keys once fetched (Adobe's,
        # refetched when their cache entry expires) are never held back by forged ones.
        self._max_unknown = max_unknown_fetches
        self._unknown_started: deque[float] = deque()  # start times within the window
        self._unknown_running = 0
        self._last_bound_warning = -BOUND_WARNING_INTERVAL

    async def get(self, path: str) -> RSAPublicKey:
        """The key for a header path; KeyPathRejected or KeyUnavailable if there is none."""
        if not is_valid_key_path(path):
            self._on_fetch(KeyFetchResult.REJECTED_PATH)
            raise KeyPathRejected(f"refused public key path {path[:MAX_KEY_PATH_LENGTH]!r}")
        pinned = self._pinned.get(path.rpartition("/")[2])
        if pinned is not None:
            return pinned
        now = self._clock()
        cached = self._cached.get(path)
        if cached is not None and now < cached[0]:
            return cached[1]
        retry_at = self._failed.get(path)
        if retry_at is not None and now < retry_at:
            raise KeyUnavailable(f"public key {path} failed moments ago")
        task = self._in_flight.get(path)
        if task is None:
            unknown = cached is None
            if unknown:
                self._take_unknown_slot(path, now)
            # One fetch per path: concurrent callers share this task, whatever its outcome.
            fetch = self._fetch(path, unknown=unknown)
            task = asyncio.create_task(fetch, name=f"fetch public key {path}")
            task.add_done_callback(_consume_outcome)
            self._in_flight[path] = task
        try:
            # Shielded: one caller giving up (client gone) must not cancel it for the others.
            return await asyncio.shield(task)
        except KeyUnavailable as exc:
            raise KeyUnavailable(str(exc)) from None
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and current is not None and not current.cancelling():
                # close() cancelled the fetch under a caller that is still running.
                raise KeyUnavailable(f"public key {path}: key store closed") from None
            raise

    async def close(self) -> None:
        """Cancel fetches in flight and close the HTTP session."""
        tasks = list(self._in_flight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _take_unknown_slot(self, path: str, now: float) -> None:
        """Count a fetch of an unknown path, or raise KeyUnavailable if the bound is reached."""
        started = self._unknown_started
        while started and started[0] <= now - NEGATIVE_CACHE_SECONDS:
            started.popleft()
        if len(started) < self._max_unknown and self._unknown_running < self._max_unknown:
            started.append(now)
            self._unknown_running += 1
            return
        # Not fetched at all: a 503, so a real new key is delivered on Adobe's retry.
        if now - self._last_bound_warning >= BOUND_WARNING_INTERVAL:
            self._last_bound_warning = now
            bound = {"max_unknown": self._max_unknown, "within_seconds": NEGATIVE_CACHE_SECONDS}
            log.warning("unknown public key paths are being refused", extra=bound)
        raise KeyUnavailable(f"public key {path} not fetched: too many unknown key paths")

    async def _fetch(self, path: str, *, unknown: bool) -> RSAPublicKey:
        try:
            pem = await self._download(path)
            key = load_rsa_public_key(pem, source=path)
        except (KeyUnavailable, ValueError) as exc:
            self._on_fetch(KeyFetchResult.ERROR)
            log.warning("public key fetch failed", extra={"path": path, "error": str(exc)})
            _bounded_put(
                self._failed, path, self._clock() + NEGATIVE_CACHE_SECONDS, MAX_REMEMBERED_FAILURES
            )
            raise KeyUnavailable(f"public key {path} unavailable: {exc}") from None
        else:
            self._on_fetch(KeyFetchResult.OK)
            log.info("public key fetched", extra={"path": path})
            self._failed.pop(path, None)
            expires_at = self._clock() + self._cache_ttl
            _bounded_put(self._cached, path, (expires_at, key), MAX_CACHED_KEYS)
            return key
        finally:
            self._in_flight.pop(path, None)
            if unknown:
                self._unknown_running -= 1

    async def _download(self, path: str) -> bytes:
        # The path passed is_valid_key_path: plain ASCII, so no (re-)encoding or normalization.
        url = URL(self._base_url + path, encoded=True)
        problem = ""
        try:
            # One budget for all attempts, so two keys fit in Adobe's 10 s delivery timeout.
            async with asyncio.timeout(self._fetch_timeout):
                for attempt in range(FETCH_ATTEMPTS):
                    if attempt:
                        await asyncio.sleep(RETRY_DELAY)
                    try:
                        return await self._download_once(url)
                    except _TransientError as exc:
                        problem = str(exc)
        except TimeoutError:
            raise KeyUnavailable(f"no answer within {self._fetch_timeout:g}s") from None
        raise KeyUnavailable(problem)

    async def _download_once(self, url: URL) -> bytes:
        if self._session is None:
            # trust_env=False: no proxy or netrc from the environment gets to see or redirect
            # key fetches; no cookies either.
            self._session = aiohttp.ClientSession(
                trust_env=False, cookie_jar=aiohttp.DummyCookieJar()
            )
        try:
            async with self._session.get(url, allow_redirects=False) as response:
                if response.status == 429 or response.status >= 500:
                    raise _TransientError(f"HTTP {response.status}")
                if response.status != 200:
                    raise KeyUnavailable(f"HTTP {response.status}")
                if (response.content_length or 0) > MAX_KEY_BYTES:
                    raise KeyUnavailable(f"key larger than {MAX_KEY_BYTES} bytes")
                body = bytearray()
                async for chunk in response.content.iter_chunked(8192):
                    body += chunk
                    if len(body) > MAX_KEY_BYTES:
                        raise KeyUnavailable(f"key larger than {MAX_KEY_BYTES} bytes")
                return bytes(body)
        except aiohttp.ClientError as exc:
            raise _TransientError(f"{type(exc).__name__}: {exc}") from None


def _bounded_put(table: dict[str, _V], path: str, value: _V, limit: int) -> None:
    table.pop(path, None)
    table[path] = value
    while len(table) > limit:
        del table[next(iter(table))]  # the oldest entry


def _consume_outcome(task: asyncio.Task[RSAPublicKey]) -> None:
    # If every caller was cancelled, nobody awaits the failure: retrieve it so asyncio does not
    # log "Task exception was never retrieved".
    if not task.cancelled():
        task.exception()
