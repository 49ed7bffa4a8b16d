"""Basic auth for the metrics listener: bcrypt off the loop, one at a time, successes cached.

A flood of wrong passwords must not delay a scrape. Successes are cached, so a scraper that has
logged in once never runs bcrypt again. Attempts not yet verified are bounded, per presented
user name (MAX_PENDING_PER_NAME) and in all (MAX_PENDING); an attempt beyond either bound is
refused at once instead of queueing. So a flood under one name leaves other users' first logins
waiting for a few bcrypts at most, and any other flood makes first logins fail fast (the next
scrape retries) instead of hanging past the scrape timeout: without the password nothing tells
the flood's attempts from a user's. The bounds look only at the name as presented, never at
whether it is configured, so they reveal no user names.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import secrets
from collections.abc import Callable, Mapping

from aiohttp import hdrs, web

CHALLENGE = 'Basic realm="aep-flow-exporter", charset="UTF-8"'
# Successful verifications kept; only right credentials get in, so real use needs a handful.
MAX_CACHED_VERIFICATIONS = 1024
# Unverified attempts (being checked or waiting) beyond which another is refused without bcrypt:
# a first login that is let in waits for at most MAX_PENDING - 1 others (about 0.2 s at cost 10).
MAX_PENDING_PER_NAME = 2
MAX_PENDING = 4

PasswordCheck = Callable[[bytes, bytes], bool]


class BasicAuthGate:
    """Checks basic-auth credentials: constant-time names, bcrypt off the loop, cached successes."""

    def __init__(self, users: Mapping[str, bytes], check: PasswordCheck) -> None:
        self._users = [(name.encode("utf-8"), hashed) for name, hashed in users.items()]
        self._check = check
        # An unknown user's password is checked against the costliest configured hash and
        # the result thrown away: a wrong user name takes as long as a wrong password (no user
        # enumeration by timing), and nothing slow is computed at start.
        self._decoy = max((hashed for _, hashed in self._users), key=lambda h: int(h[4:6]))
        # Cache keys are keyed HMACs: the cache never holds anything a password could be
        # recovered from faster than from the bcrypt hash itself.
        self._cache_secret = secrets.token_bytes(32)
        self._verified: dict[bytes, None] = {}
        # Attempts being checked or waiting, per presented user name; at most MAX_PENDING names.
        self._pending: dict[bytes, int] = {}
        # One bcrypt at a time, as exporter-toolkit's bcryptMtx: a flood of wrong passwords
        # costs one core, and a scraper with cached credentials never waits for it.
        self._bcrypt_lock = asyncio.Lock()

    async def admits(self, request: web.Request) -> bool:
        """Whether the request carries the right password of a configured user."""
        credentials = basic_credentials(request.headers.get(hdrs.AUTHORIZATION, ""))
        if credentials is None:
            return False
        user, password = credentials
        hashed, known = self._decoy, False
        for name, candidate in self._users:  # compare every name: no early exit to time
            if hmac.compare_digest(name, user):
                hashed, known = candidate, True
        key = hmac.digest(
            self._cache_secret, len(user).to_bytes(4, "big") + user + hashed + password, "sha256"
        )
        if key in self._verified:
            return True
        pending = self._pending.get(user, 0)
        if pending >= MAX_PENDING_PER_NAME or sum(self._pending.values()) >= MAX_PENDING:
            return False  # refused fast: see the module docstring
        self._pending[user] = pending + 1
        try:
            async with self._bcrypt_lock:
                if key in self._verified:  # verified while this request waited
                    return True
                matches = await asyncio.to_thread(self._check_password, password, hashed)
        finally:
            self._pending[user] -= 1
            if not self._pending[user]:
                del self._pending[user]
        if not (matches and known):
            return False
        if len(self._verified) >= MAX_CACHED_VERIFICATIONS:
            del self._verified[next(iter(self._verified))]
        self._verified[key] = None
        return True

    def _check_password(self, password: bytes, hashed: bytes) -> bool:
        try:
            return self._check(password, hashed)
        except ValueError:  # bcrypt refuses passwords over 72 bytes: a wrong password
            return False


def basic_credentials(header: str) -> tuple[bytes, bytes] | None:
    """User and password of an `Authorization: Basic` header, as bytes; None if absent or bad."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except ValueError:
        return None
    user, colon, password = decoded.partition(b":")
    return (user, password) if colon else None
