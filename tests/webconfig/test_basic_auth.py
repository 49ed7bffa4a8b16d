"""Basic auth and extra headers through the middleware, on a real TLS listener over loopback."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st

from exporter.http.basic_auth import (
    MAX_PENDING,
    MAX_PENDING_PER_NAME,
    BasicAuthGate,
    basic_credentials,
)
from exporter.http.webconfig import WebConfig, load_web_config
from tests.webconfig.conftest import (
    PASSWORDS,
    PKI,
    CountingCheck,
    Serve,
    basic_auth,
    client_context,
    fetch,
)

CHALLENGE = 'Basic realm="aep-flow-exporter", charset="UTF-8"'


@pytest.mark.parametrize("user", sorted(PASSWORDS))
async def test_right_credentials_are_served(
    auth_config: WebConfig, serve: Serve, pki: PKI, user: str
) -> None:
    """A configured user with the right password gets 200, whichever bcrypt prefix."""
    port = await serve(auth_config)
    reply = await fetch(
        f"https://127.0.0.1:{port}/metrics",
        trust=client_context(pki),
        headers=basic_auth(user, PASSWORDS[user]),
    )
    assert reply.status == 200
    assert reply.headers["X-Frame-Options"] == "deny"
    assert reply.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param(basic_auth("alice", "wrong"), id="wrong"),
        # An unknown user is checked against a configured user's hash: that password fails too.
        pytest.param(basic_auth("mallory", "alice-secret"), id="unknown-user"),
        pytest.param(basic_auth("mallory", "correct horse"), id="unknown-user-2"),
        pytest.param(basic_auth("alice", "x" * 100), id="over-72-bytes"),
        pytest.param(basic_auth("Alice", "alice-secret"), id="case"),
        pytest.param({"Authorization": "Bearer alice-secret"}, id="other-scheme"),
        pytest.param({"Authorization": "Basic !!!notbase64"}, id="bad-base64"),
        pytest.param({"Authorization": "Basic YWxpY2U="}, id="no-colon"),
    ],
)
async def test_bad_credentials_get_401_with_challenge(
    auth_config: WebConfig, serve: Serve, pki: PKI, headers: dict[str, str]
) -> None:
    """Missing, wrong, unknown-user and malformed credentials get 401 with a Basic challenge."""
    port = await serve(auth_config)
    reply = await fetch(
        f"https://127.0.0.1:{port}/metrics", trust=client_context(pki), headers=headers
    )
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"] == CHALLENGE
    # The configured headers are on refusals too, as exporter-toolkit sets them first.
    assert reply.headers["X-Frame-Options"] == "deny"


async def test_successful_verification_is_cached(
    auth_config: WebConfig, serve: Serve, pki: PKI
) -> None:
    """A second request with the same right credentials does not run bcrypt again."""
    check = CountingCheck()
    port = await serve(auth_config, check)
    url = f"https://127.0.0.1:{port}/metrics"
    alice = basic_auth("alice", PASSWORDS["alice"])
    for _ in range(3):
        assert (await fetch(url, trust=client_context(pki), headers=alice)).status == 200
    assert check.calls == 1
    bob = basic_auth("bob", PASSWORDS["bob"])
    assert (await fetch(url, trust=client_context(pki), headers=bob)).status == 200
    assert check.calls == 2


async def test_failures_and_unknown_users_always_run_bcrypt(
    auth_config: WebConfig, serve: Serve, pki: PKI
) -> None:
    """Wrong passwords are never cached, and an unknown user costs a bcrypt check too."""
    check = CountingCheck()
    port = await serve(auth_config, check)
    url = f"https://127.0.0.1:{port}/metrics"
    for auth in [basic_auth("alice", "wrong")] * 2 + [basic_auth("mallory", "x")]:
        assert (await fetch(url, trust=client_context(pki), headers=auth)).status == 401
    assert check.calls == 3


async def test_bcrypt_runs_off_the_event_loop(
    auth_config: WebConfig, serve: Serve, pki: PKI
) -> None:
    """While one bcrypt check is in progress, a request with cached credentials is served."""
    entered, release = threading.Event(), threading.Event()

    def slow_check(password: bytes, hashed: bytes) -> bool:
        if password == b"slow":
            entered.set()
            release.wait(timeout=5)
        return bcrypt.checkpw(password, hashed)

    port = await serve(auth_config, slow_check)
    url = f"https://127.0.0.1:{port}/metrics"
    trust = client_context(pki)
    alice = basic_auth("alice", PASSWORDS["alice"])
    assert (await fetch(url, trust=trust, headers=alice)).status == 200  # now cached
    stuck = asyncio.create_task(fetch(url, trust=trust, headers=basic_auth("bob", "slow")))
    try:
        assert await asyncio.to_thread(entered.wait, 5)
        assert (await fetch(url, trust=trust, headers=alice)).status == 200
    finally:
        release.set()
    assert (await stuck).status == 401


async def test_attempts_beyond_the_bounds_are_refused_without_bcrypt(
    password_hashes: dict[str, str],
) -> None:
    """Beyond MAX_PENDING_PER_NAME unverified attempts of a name, or MAX_PENDING in all, an
    attempt is refused at once; cached and later logins are unaffected."""
    entered, release = threading.Event(), threading.Event()
    checked: list[bytes] = []

    def slow_check(password: bytes, hashed: bytes) -> bool:
        checked.append(password)
        if password.startswith(b"slow"):
            entered.set()
            release.wait(timeout=5)
        return bcrypt.checkpw(password, hashed)

    users = {user: hashed.encode() for user, hashed in password_hashes.items()}
    gate = BasicAuthGate(users, slow_check)

    def admits(user: str, password: str) -> asyncio.Task[bool]:
        request = make_mocked_request("GET", "/metrics", headers=basic_auth(user, password))
        return asyncio.create_task(gate.admits(request))

    assert await admits("bob", PASSWORDS["bob"])  # verified: cached from now on
    checked.clear()
    held = [admits("alice", f"slow-{number}") for number in range(MAX_PENDING_PER_NAME)]
    try:
        assert await asyncio.to_thread(entered.wait, 5)
        assert not await admits("alice", PASSWORDS["alice"])  # this name's bound
        held += [admits(f"mallory-{n}", "slow") for n in range(MAX_PENDING - len(held))]
        await asyncio.sleep(0.05)  # the new attempts wait for the one being checked
        assert not await admits("carol", "whatever")  # the bound in all
        assert await admits("bob", PASSWORDS["bob"])  # cached: never waits
        assert checked == [b"slow-0"]
    finally:
        release.set()
    assert not any(await asyncio.gather(*held))
    assert await admits("alice", PASSWORDS["alice"])


async def test_no_users_means_no_auth(
    write_config: Callable[[str], Path], serve: Serve, pki: PKI
) -> None:
    """Without basic_auth_users the middleware lets every request through."""
    config = load_web_config(
        write_config("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    )
    assert not config.auth_enabled
    port = await serve(config)
    reply = await fetch(f"https://127.0.0.1:{port}/metrics", trust=client_context(pki))
    assert reply.status == 200
    assert "WWW-Authenticate" not in reply.headers


async def test_auth_without_tls_on_plain_listener(
    write_config: Callable[[str], Path], serve: Serve, password_hashes: dict[str, str]
) -> None:
    """Basic auth also works on a plain-HTTP listener (exporter-toolkit allows it)."""
    config = load_web_config(
        write_config(f"basic_auth_users:\n  bob: '{password_hashes['bob']}'\n")
    )
    port = await serve(config)
    url = f"http://127.0.0.1:{port}/metrics"
    assert (await fetch(url)).status == 401
    reply = await fetch(url, headers=basic_auth("bob", PASSWORDS["bob"]))
    assert reply.status == 200
    assert reply.body == "plain"


@given(st.text(max_size=200))
def test_any_authorization_header_parses_or_is_refused(header: str) -> None:
    """No Authorization header value makes the credential parser raise."""
    credentials = basic_credentials(header)
    assert credentials is None or all(isinstance(part, bytes) for part in credentials)


@given(user=st.binary(max_size=40).filter(lambda b: b":" not in b), password=st.binary(max_size=80))
def test_credentials_round_trip(user: bytes, password: bytes) -> None:
    """Whatever bytes a client encodes come back unchanged, split at the first colon."""
    header = "Basic " + base64.b64encode(user + b":" + password).decode()
    assert basic_credentials(header) == (user, password)
