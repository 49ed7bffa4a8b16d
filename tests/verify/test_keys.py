"""The public key store: path checks, fetching, caching, pinning (protocol notes §1.3.1, §1.3.2)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from exporter.domain import ExporterError
from exporter.verify.keys import (
    MAX_KEY_BYTES,
    MAX_KEY_PATH_LENGTH,
    NEGATIVE_CACHE_SECONDS,
    KeyPathRejected,
    KeyUnavailable,
    PublicKeyStore,
    is_valid_key_path,
)
from tests.verify.conftest import (
    GONE_PATH,
    KEY1_PATH,
    KEY2_PATH,
    FakeClock,
    KeyServer,
    SigningKeys,
    StoreFactory,
)

HOSTILE_PATHS = [
    "//evil.example/x.pem",
    "/../x.pem",
    "/prod/keys/../../x.pem",
    "@evil/x.pem",
    "/@evil.example/x.pem",
    "https://evil.example/x.pem",
    "/prod/keys/%2e%2e/x.pem",
    "/x.pem?y",
    "/x.pem#y",
    "/prod\\keys\\x.pem",
    "/prod/keys/./x.pem",
    "/prod/keys/.pem",
    "/prod/keys/x.PEM",
    "/prod/keys/x.pem/",
    "/prod/keys/x.txt",
    "prod/keys/x.pem",
    "/prod/keys/x.pem\n",
    "/prod/keys/x y.pem",
    "/prod/keys/\u00e9.pem",
    "/" + "a" * MAX_KEY_PATH_LENGTH + ".pem",
    "",
]


@pytest.mark.parametrize("path", [KEY1_PATH, "/prod/keys/pub-key-Ptc2pD9vT9.pem", "/k_1.v2.pem"])
def test_adobe_shaped_paths_are_valid(path: str) -> None:
    """Paths shaped like Adobe's (/prod/keys/pub-key-<id>.pem) pass the path check."""
    assert is_valid_key_path(path)


@pytest.mark.parametrize("path", HOSTILE_PATHS)
async def test_hostile_paths_are_rejected_without_a_request(
    path: str, make_store: StoreFactory, key_server: KeyServer, fetches: list[str]
) -> None:
    """A path that could leave the key host or its directory is refused before any request."""
    store = make_store()
    with pytest.raises(KeyPathRejected):
        await store.get(path)
    assert fetches == ["rejected_path"]
    assert key_server.total_requests == 0


# Mostly harmless path characters with the dangerous ones mixed in, so that a good share of the
# generated paths is valid and the property below is exercised, not vacuous.
_PATH_CHARS = list("abc123-_" * 4 + "././" + "@:%\\?# \u00e9\n")
KEY_PATHS = st.one_of(
    st.text(max_size=80),
    st.lists(st.sampled_from(_PATH_CHARS), max_size=40).map(lambda cs: "/" + "".join(cs) + ".pem"),
)


@settings(derandomize=True, deadline=None, max_examples=500)
@given(KEY_PATHS)
def test_a_valid_path_never_changes_the_key_host(path: str) -> None:
    """Whatever the header says, an accepted path keeps the configured host and names a .pem."""
    if is_valid_key_path(path):
        url = URL("https://static.adobeioevents.com" + path, encoded=True)
        assert url.host == "static.adobeioevents.com"
        assert url.port == 443
        assert url.path == path
        assert not url.query_string
        assert not url.fragment
        assert ".." not in url.parts


async def test_a_fetched_key_is_cached_until_the_ttl_ends(
    make_store: StoreFactory,
    key_server: KeyServer,
    clock: FakeClock,
    fetches: list[str],
    signing_keys: SigningKeys,
) -> None:
    """A key is fetched once, served from cache before the TTL ends and fetched again after."""
    store = make_store(cache_ttl=600.0)
    key = await store.get(KEY1_PATH)
    assert key.public_numbers() == signing_keys.one.private.public_key().public_numbers()
    clock.advance(599.0)
    await store.get(KEY1_PATH)
    assert key_server.requests[KEY1_PATH] == 1
    clock.advance(1.0)
    await store.get(KEY1_PATH)
    assert key_server.requests[KEY1_PATH] == 2
    assert fetches == ["ok", "ok"]


async def test_each_path_is_cached_separately(
    make_store: StoreFactory, key_server: KeyServer, fetches: list[str]
) -> None:
    """Two key paths mean two fetches, each once."""
    store = make_store()
    for _ in range(3):
        await store.get(KEY1_PATH)
        await store.get(KEY2_PATH)
    assert key_server.requests == {KEY1_PATH: 1, KEY2_PATH: 1}
    assert fetches == ["ok", "ok"]


async def test_concurrent_callers_share_one_fetch(
    make_store: StoreFactory, key_server: KeyServer, fetches: list[str]
) -> None:
    """Fifty concurrent callers of a cold key cause exactly one request."""
    key_server.delay = 0.05
    store = make_store()
    keys = await asyncio.gather(*(store.get(KEY1_PATH) for _ in range(50)))
    assert len({id(key) for key in keys}) == 1
    assert key_server.requests[KEY1_PATH] == 1
    assert fetches == ["ok"]


async def test_concurrent_callers_share_one_failure_and_a_later_call_retries(
    make_store: StoreFactory, key_server: KeyServer, clock: FakeClock, fetches: list[str]
) -> None:
    """Concurrent callers of a failing fetch all get KeyUnavailable; a later call tries again."""
    key_server.delay = 0.05
    key_server.mode = "not_found"
    store = make_store()
    outcomes = await asyncio.gather(
        *(store.get(KEY1_PATH) for _ in range(20)), return_exceptions=True
    )
    assert all(isinstance(outcome, KeyUnavailable) for outcome in outcomes)
    assert key_server.requests[KEY1_PATH] == 1
    assert fetches == ["error"]
    key_server.mode = "up"
    clock.advance(NEGATIVE_CACHE_SECONDS)
    await store.get(KEY1_PATH)
    assert fetches == ["error", "ok"]


async def test_unknown_paths_are_fetched_a_bounded_number_of_times_per_window(
    make_store: StoreFactory, key_server: KeyServer, clock: FakeClock, fetches: list[str]
) -> None:
    """Beyond max_unknown_fetches new paths per window, a path is refused without a request."""
    store = make_store(max_unknown_fetches=3)
    paths = [f"/prod/keys/pub-key-made-up-{number}.pem" for number in range(10)]
    outcomes = await asyncio.gather(*(store.get(path) for path in paths), return_exceptions=True)
    assert all(isinstance(outcome, KeyUnavailable) for outcome in outcomes)
    assert key_server.total_requests == 3
    assert fetches == ["error"] * 3
    # Each failed path is remembered; the refused ones were never fetched, so they still cost
    # nothing until the window has passed.
    for path in paths:
        with pytest.raises(KeyUnavailable):
            await store.get(path)
    assert key_server.total_requests == 3
    clock.advance(NEGATIVE_CACHE_SECONDS)
    await store.get(KEY1_PATH)
    assert key_server.total_requests == 4
    assert fetches == ["error"] * 3 + ["ok"]


async def test_the_bound_counts_fetches_still_running(
    make_store: StoreFactory, key_server: KeyServer, clock: FakeClock
) -> None:
    """A slow fetch of a new path keeps its place in the bound until it ends, and succeeds."""
    key_server.mode = "slow"
    store = make_store(max_unknown_fetches=2)
    slow = asyncio.create_task(store.get(KEY1_PATH))
    also_slow = asyncio.create_task(store.get(KEY2_PATH))
    async with asyncio.timeout(2.0):
        while key_server.total_requests < 2:  # noqa: ASYNC110 - a counter, no event to await
            await asyncio.sleep(0.01)
    clock.advance(NEGATIVE_CACHE_SECONDS)  # the window has passed, the fetches have not
    with pytest.raises(KeyUnavailable, match="too many unknown key paths"):
        await store.get(GONE_PATH)
    key_server.release.set()
    assert await slow is not None
    assert await also_slow is not None
    with pytest.raises(KeyUnavailable, match="unavailable"):
        await store.get(GONE_PATH)  # fetched now: the host answers 404


async def test_a_known_key_is_refetched_whatever_the_unknown_ones_do(
    make_store: StoreFactory, key_server: KeyServer, clock: FakeClock, fetches: list[str]
) -> None:
    """A key fetched before is fetched again at expiry even while the bound is reached."""
    store = make_store(cache_ttl=600.0, max_unknown_fetches=2)
    await store.get(KEY1_PATH)
    clock.advance(600.0)
    for number in range(2):
        with pytest.raises(KeyUnavailable):
            await store.get(f"/prod/keys/pub-key-made-up-{number}.pem")
    with pytest.raises(KeyUnavailable, match="too many unknown key paths"):
        await store.get(KEY2_PATH)
    await store.get(KEY1_PATH)
    assert key_server.requests[KEY1_PATH] == 2
    assert fetches == ["ok", "error", "error", "ok"]


async def test_a_cancelled_caller_does_not_cancel_the_shared_fetch(
    make_store: StoreFactory, key_server: KeyServer, fetches: list[str]
) -> None:
    """One caller giving up leaves the fetch running for the others."""
    key_server.delay = 0.1
    store = make_store()
    impatient = asyncio.create_task(store.get(KEY1_PATH))
    patient = asyncio.create_task(store.get(KEY1_PATH))
    await asyncio.sleep(0.02)
    impatient.cancel()
    async with asyncio.timeout(5):
        await patient
    assert impatient.cancelled()
    assert fetches == ["ok"]


async def test_key_host_down_then_back(
    make_store: StoreFactory, key_server: KeyServer, clock: FakeClock, fetches: list[str]
) -> None:
    """An unreachable key host means KeyUnavailable, briefly remembered; it recovers after."""
    store = make_store()
    await key_server.stop()
    with pytest.raises(KeyUnavailable):
        await store.get(KEY1_PATH)
    assert fetches == ["error"]
    await key_server.start()
    # Within the negative cache the failure is answered at once, without a request.
    with pytest.raises(KeyUnavailable):
        await store.get(KEY1_PATH)
    assert key_server.total_requests == 0
    assert fetches == ["error"]
    clock.advance(NEGATIVE_CACHE_SECONDS)
    await store.get(KEY1_PATH)
    assert fetches == ["error", "ok"]


async def test_a_slow_key_host_times_out_within_the_budget(
    make_store: StoreFactory, key_server: KeyServer, clock: FakeClock, fetches: list[str]
) -> None:
    """A key host slower than fetch_timeout means KeyUnavailable after about fetch_timeout."""
    key_server.mode = "slow"
    store = make_store(fetch_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(KeyUnavailable):
        await store.get(KEY1_PATH)
    assert time.monotonic() - started < 2.0
    assert fetches == ["error"]
    key_server.mode = "up"
    clock.advance(NEGATIVE_CACHE_SECONDS)
    await store.get(KEY1_PATH)
    assert fetches == ["error", "ok"]


async def test_a_transient_error_is_retried_once(
    make_store: StoreFactory, key_server: KeyServer, fetches: list[str]
) -> None:
    """A 503 from the key host is retried, and the retry's success counts as one fetch."""
    key_server.fail_next = 1
    store = make_store()
    await store.get(KEY1_PATH)
    assert key_server.requests[KEY1_PATH] == 2
    assert fetches == ["ok"]


async def test_retries_are_bounded(
    make_store: StoreFactory, key_server: KeyServer, fetches: list[str]
) -> None:
    """A key host answering 503 every time is asked twice, then the fetch fails."""
    key_server.fail_next = 100
    store = make_store()
    with pytest.raises(KeyUnavailable):
        await store.get(KEY1_PATH)
    assert key_server.requests[KEY1_PATH] == 2
    assert fetches == ["error"]


async def test_not_found_is_not_retried(
    make_store: StoreFactory, key_server: KeyServer, fetches: list[str]
) -> None:
    """A 404 fails the fetch at once."""
    store = make_store()
    with pytest.raises(KeyUnavailable):
        await store.get(GONE_PATH)
    assert key_server.requests[GONE_PATH] == 1
    assert fetches == ["error"]


async def test_redirects_are_not_followed(
    make_store: StoreFactory, key_server: KeyServer, fetches: list[str]
) -> None:
    """A redirect from the key host is a failed fetch, and its target is never requested."""
    key_server.mode = "redirect"
    store = make_store()
    with pytest.raises(KeyUnavailable):
        await store.get(KEY1_PATH)
    assert key_server.requests == {KEY1_PATH: 1}
    assert fetches == ["error"]


async def test_garbage_is_not_a_key(
    make_store: StoreFactory, key_server: KeyServer, clock: FakeClock, fetches: list[str]
) -> None:
    """A 200 answer that is not PEM fails the fetch, and is not cached."""
    key_server.mode = "garbage"
    store = make_store()
    with pytest.raises(KeyUnavailable):
        await store.get(KEY1_PATH)
    key_server.mode = "up"
    clock.advance(NEGATIVE_CACHE_SECONDS)
    await store.get(KEY1_PATH)
    assert fetches == ["error", "ok"]


async def test_a_non_rsa_key_is_refused(
    make_store: StoreFactory, key_server: KeyServer, fetches: list[str]
) -> None:
    """A valid PEM public key that is not RSA fails the fetch."""
    key_server.keys[KEY1_PATH] = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    store = make_store()
    with pytest.raises(KeyUnavailable):
        await store.get(KEY1_PATH)
    assert fetches == ["error"]


async def test_an_oversized_answer_is_refused(
    make_store: StoreFactory, key_server: KeyServer, fetches: list[str], signing_keys: SigningKeys
) -> None:
    """A key answer larger than the size limit fails the fetch."""
    key_server.keys[KEY1_PATH] = signing_keys.one.public_pem + b"\n" * MAX_KEY_BYTES
    store = make_store()
    with pytest.raises(KeyUnavailable):
        await store.get(KEY1_PATH)
    assert fetches == ["error"]


async def test_a_pinned_key_is_used_with_the_key_host_down(
    make_store: StoreFactory,
    key_server: KeyServer,
    fetches: list[str],
    signing_keys: SigningKeys,
    pinned_dir: Path,
) -> None:
    """A path whose file name is pinned uses the pinned key and fetches nothing."""
    (pinned_dir / "pub-key-one.pem").write_bytes(signing_keys.one.public_pem)
    store = make_store(pinned_dir=pinned_dir)
    await key_server.stop()
    expected = signing_keys.one.private.public_key().public_numbers()
    for path in (KEY1_PATH, "/stage/keys/pub-key-one.pem"):
        assert (await store.get(path)).public_numbers() == expected
    assert fetches == []
    assert key_server.total_requests == 0


async def test_a_pinned_name_does_not_excuse_a_hostile_path(
    make_store: StoreFactory,
    key_server: KeyServer,
    fetches: list[str],
    signing_keys: SigningKeys,
    pinned_dir: Path,
) -> None:
    """The path check comes before the pinned lookup."""
    (pinned_dir / "pub-key-one.pem").write_bytes(signing_keys.one.public_pem)
    store = make_store(pinned_dir=pinned_dir)
    with pytest.raises(KeyPathRejected):
        await store.get("/../pub-key-one.pem")
    assert fetches == ["rejected_path"]


async def test_unpinned_paths_are_still_fetched(
    make_store: StoreFactory,
    key_server: KeyServer,
    fetches: list[str],
    signing_keys: SigningKeys,
    pinned_dir: Path,
) -> None:
    """Pinning one key leaves the others to the key host."""
    (pinned_dir / "pub-key-one.pem").write_bytes(signing_keys.one.public_pem)
    store = make_store(pinned_dir=pinned_dir)
    await store.get(KEY2_PATH)
    assert key_server.requests == {KEY2_PATH: 1}
    assert fetches == ["ok"]


@pytest.mark.parametrize(
    "content", [b"not a key", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"]
)
def test_a_bad_pinned_file_is_named(pinned_dir: Path, content: bytes) -> None:
    """A pinned file that is not an RSA public key fails construction, naming the file."""
    (pinned_dir / "broken.pem").write_bytes(content)
    with pytest.raises(ExporterError, match=r"broken\.pem"):
        PublicKeyStore(
            base_url="https://static.adobeioevents.com",
            pinned_dir=pinned_dir,
            cache_ttl=60.0,
            fetch_timeout=1.0,
        )


def test_a_missing_pinned_dir_is_an_error(tmp_path: Path) -> None:
    """A pinned keys directory that does not exist fails construction."""
    with pytest.raises(ExporterError, match="nowhere"):
        PublicKeyStore(
            base_url="https://static.adobeioevents.com",
            pinned_dir=tmp_path / "nowhere",
            cache_ttl=60.0,
            fetch_timeout=1.0,
        )


async def test_close_fails_a_fetch_in_flight(
    make_store: StoreFactory, key_server: KeyServer, fetches: list[str]
) -> None:
    """Closing the store ends a fetch in flight; its caller gets KeyUnavailable, not a hang."""
    key_server.mode = "slow"
    store = make_store(fetch_timeout=10.0)
    caller = asyncio.create_task(store.get(KEY1_PATH))
    async with asyncio.timeout(5):
        await key_server.request_arrived.wait()
        await store.close()
        with pytest.raises(KeyUnavailable):
            await caller
    assert fetches == []
