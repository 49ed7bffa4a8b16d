"""The webhook's security edge over HTTP: signatures, keys, recipients (protocol notes §1.3)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from multidict import CIMultiDict
from prometheus_client import CollectorRegistry

from exporter import __version__
from exporter.metrics.self_metrics import source_revision
from tests.conftest import SUCCESS_FLOW, AppClient, MakeClient, fixture_bytes
from tests.verify.conftest import KEY1_PATH, KEY2_PATH, KeyServer, SigningKeys, signed_headers

SEED = fixture_bytes("seed_success.json")
SEED_FAILURE = fixture_bytes("seed_failure.json")
OUR_CLIENT_ID = "our-client-id"
SECRET = "legacy-client-secret"

HeaderBuilder = Callable[[SigningKeys], CIMultiDict[str]]


async def deliver(client: AppClient, body: bytes, headers: CIMultiDict[str]) -> ClientResponse:
    """POST the exact bytes to the webhook with the given headers."""
    return await client.post("/webhook", data=body, headers=headers)


def signed_by_both(keys: SigningKeys, body: bytes, **extra: str) -> CIMultiDict[str]:
    """Headers as Adobe sends them: signature 1 by key one, signature 2 by key two."""
    return signed_headers(
        (keys.one.sign(body), KEY1_PATH), (keys.two.sign(body), KEY2_PATH), **extra
    )


def rejected(registry: CollectorRegistry, reason: str) -> float | None:
    """aep_exporter_requests_rejected_total for one reason."""
    return registry.get_sample_value("aep_exporter_requests_rejected_total", {"reason": reason})


def key_fetches(registry: CollectorRegistry, result: str) -> float | None:
    """aep_exporter_public_key_fetches_total for one result."""
    return registry.get_sample_value("aep_exporter_public_key_fetches_total", {"result": result})


def seed_runs(registry: CollectorRegistry) -> float | None:
    """Successful runs counted for the seed success flow (None: the flow is unknown)."""
    labels = {"sandbox": "prod", "flow_id": SUCCESS_FLOW, "status": "success"}
    return registry.get_sample_value("aep_flow_runs_total", labels)


def notifications(registry: CollectorRegistry, kind: str, outcome: str) -> float | None:
    """aep_exporter_notifications_total for one kind and outcome of the webhook."""
    labels = {"source": "webhook", "kind": kind, "outcome": outcome}
    return registry.get_sample_value("aep_exporter_notifications_total", labels)


def assert_nothing_recorded(registry: CollectorRegistry) -> None:
    """No flow is tracked, no flow series exists and no document was counted."""
    assert registry.get_sample_value("aep_exporter_tracked_flows") == 0
    assert seed_runs(registry) is None
    for metric in registry.collect():
        if metric.name == "aep_exporter_notifications":
            assert sum(s.value for s in metric.samples if s.name.endswith("_total")) == 0
        if metric.name.startswith("aep_flow_"):
            assert metric.samples == [], metric.name


def with_field(body: bytes, name: str, value: str) -> bytes:
    """The document with one more top-level field (a recipient id, as I/O Events adds it)."""
    return json.dumps({**json.loads(body), name: value}).encode()


# -- signatures ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sign",
    [
        pytest.param(signed_by_both, id="both signatures"),
        pytest.param(
            lambda keys, body: signed_headers(None, (keys.two.sign(body), KEY2_PATH)),
            id="key two only",
        ),
    ],
)
async def test_a_signed_delivery_is_recorded_and_its_key_cached(
    make_verified_client: MakeClient,
    key_server: KeyServer,
    signing_keys: SigningKeys,
    sign: Callable[[SigningKeys, bytes], CIMultiDict[str]],
) -> None:
    """A delivery Adobe signed is recorded; the next one reuses the cached key, no new fetch."""
    client, registry, _ = await make_verified_client()
    response = await deliver(client, SEED, sign(signing_keys, SEED))
    assert response.status == 200, await response.text()
    assert seed_runs(registry) == 1
    assert key_server.total_requests == 1
    assert key_fetches(registry, "ok") == 1

    response = await deliver(client, SEED_FAILURE, sign(signing_keys, SEED_FAILURE))
    assert response.status == 200, await response.text()
    assert notifications(registry, "run", "recorded") == 2
    assert key_server.total_requests == 1
    assert key_fetches(registry, "ok") == 1


def _compact(body: bytes) -> bytes:
    return json.dumps(json.loads(body), separators=(",", ":")).encode()


UNVERIFIABLE: list[Any] = [
    pytest.param(
        lambda keys: signed_headers(
            (keys.stranger.sign(SEED), KEY1_PATH), (keys.stranger.sign(SEED), KEY2_PATH)
        ),
        "bad_signature",
        id="stranger's signatures",
    ),
    pytest.param(
        lambda keys: signed_by_both(keys, _compact(SEED)),
        "bad_signature",
        id="signed over re-serialized JSON",
    ),
    pytest.param(
        lambda keys: signed_by_both(keys, SEED + b"\n"),
        "bad_signature",
        id="signed over other bytes",
    ),
    pytest.param(
        lambda keys: signed_headers(
            (keys.one.sign(SEED), KEY2_PATH), (keys.two.sign(SEED), KEY1_PATH)
        ),
        "bad_signature",
        id="swapped key paths",
    ),
    pytest.param(
        lambda keys: signed_headers(("not base64!", KEY1_PATH), ("", KEY2_PATH)),
        "bad_signature",
        id="signature not Base64",
    ),
    pytest.param(lambda keys: CIMultiDict(), "missing_signature", id="no signature"),
    pytest.param(
        lambda keys: CIMultiDict({"x-adobe-signature": keys.one.sign(SEED)}),
        "missing_signature",
        id="HMAC header without a client secret",
    ),
]


@pytest.mark.parametrize(("headers", "reason"), UNVERIFIABLE)
async def test_an_unverifiable_delivery_is_refused_and_records_nothing(
    make_verified_client: MakeClient,
    signing_keys: SigningKeys,
    headers: HeaderBuilder,
    reason: str,
) -> None:
    """401 for the whole delivery, counted by reason; no flow and no document is recorded."""
    client, registry, _ = await make_verified_client()
    response = await deliver(client, SEED, headers(signing_keys))
    assert response.status == 401
    assert "Traceback" not in await response.text()
    assert rejected(registry, reason) == 1
    assert_nothing_recorded(registry)


# Each path, naively appended to the key host or normalized by a URL library, would fetch key
# one from the loopback key host, and the signature would verify: refusal is by path alone.
HOSTILE_PATHS = [
    "/prod/keys/x/../pub-key-one.pem",
    "/prod/keys/./pub-key-one.pem",
    "/prod/keys/%70ub-key-one.pem",
    "/prod/keys/pub-key-one.pem?.pem",
    "/prod\\keys\\pub-key-one.pem",
    "//{authority}/prod/keys/pub-key-one.pem",
    "@{authority}/prod/keys/pub-key-one.pem",
    "http://{authority}/prod/keys/pub-key-one.pem",
]


@pytest.mark.parametrize("path", HOSTILE_PATHS)
async def test_hostile_key_paths_are_refused_without_a_fetch(
    make_verified_client: MakeClient,
    key_server: KeyServer,
    signing_keys: SigningKeys,
    path: str,
) -> None:
    """A key path that could leave the key directory is refused before any request (§1.3.2)."""
    client, registry, _ = await make_verified_client()
    hostile = path.format(authority=key_server.base_url.removeprefix("http://"))
    signature = signing_keys.one.sign(SEED)
    response = await deliver(
        client, SEED, signed_headers((signature, hostile), (signature, hostile))
    )
    assert response.status == 401
    assert rejected(registry, "bad_signature") == 1
    assert key_server.total_requests == 0
    assert key_fetches(registry, "rejected_path") == 2
    assert key_fetches(registry, "ok") == 0
    assert key_fetches(registry, "error") == 0
    assert_nothing_recorded(registry)


async def test_a_good_signature_saves_a_delivery_with_one_hostile_path(
    make_verified_client: MakeClient, key_server: KeyServer, signing_keys: SigningKeys
) -> None:
    """Either signature verifying is enough: a refused path on pair 1 does not sink pair 2."""
    client, registry, _ = await make_verified_client()
    headers = signed_headers(
        (signing_keys.one.sign(SEED), "/prod/keys/../keys/pub-key-one.pem"),
        (signing_keys.two.sign(SEED), KEY2_PATH),
    )
    response = await deliver(client, SEED, headers)
    assert response.status == 200, await response.text()
    assert seed_runs(registry) == 1
    assert dict(key_server.requests) == {KEY2_PATH: 1}
    assert key_fetches(registry, "rejected_path") == 1


# -- key availability ------------------------------------------------------------------------


async def _break(key_server: KeyServer, mode: str) -> None:
    if mode == "down":
        await key_server.stop()
    else:
        key_server.mode = "slow" if mode == "slow" else "garbage"


async def _repair(key_server: KeyServer, mode: str) -> None:
    if mode == "down":
        await key_server.start()
    key_server.mode = "up"
    key_server.release.set()


@pytest.mark.parametrize("mode", ["down", "slow", "garbage"])
async def test_an_unavailable_key_answers_503_until_the_key_host_recovers(
    make_verified_client: MakeClient,
    key_server: KeyServer,
    signing_keys: SigningKeys,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    """No key: 503 + Retry-After, readiness kept; Adobe's retry after recovery is recorded once."""
    # The store remembers a failed fetch for 2 s; the retry below comes sooner than that.
    monkeypatch.setattr("exporter.verify.keys.NEGATIVE_CACHE_SECONDS", 0.0)
    client, registry, _ = await make_verified_client(key_fetch_timeout=0.3)
    headers = signed_by_both(signing_keys, SEED, x_adobe_event_id="aec55616")
    await _break(key_server, mode)

    response = await deliver(client, SEED, headers)
    assert response.status == 503
    assert response.headers["Retry-After"].isdigit()
    assert rejected(registry, "key_unavailable") == 1
    assert key_fetches(registry, "error") == 2  # one per signature's key
    assert (await client.get("/readyz")).status == 200
    assert_nothing_recorded(registry)

    await _repair(key_server, mode)
    retry = signed_by_both(signing_keys, SEED, x_adobe_event_id="aec55616", x_adobe_retry_count="1")
    for _ in range(2):  # the retry, and a redelivery of it
        response = await deliver(client, SEED, retry)
        assert response.status == 200, await response.text()
    assert seed_runs(registry) == 1
    assert notifications(registry, "run", "recorded") == 1
    assert notifications(registry, "run", "duplicate") == 1
    assert registry.get_sample_value("aep_exporter_delivery_retries_total") == 2
    assert rejected(registry, "key_unavailable") == 1


async def test_a_pinned_key_verifies_with_the_key_host_down(
    make_verified_client: MakeClient,
    key_server: KeyServer,
    signing_keys: SigningKeys,
    pinned_dir: Path,
) -> None:
    """With key one pinned by file name, a delivery verifies while the key host is unreachable."""
    (pinned_dir / "pub-key-one.pem").write_bytes(signing_keys.one.public_pem)
    await key_server.stop()
    client, registry, _ = await make_verified_client(pinned_keys_dir=pinned_dir)
    headers = signed_headers((signing_keys.one.sign(SEED), KEY1_PATH))
    response = await deliver(client, SEED, headers)
    assert response.status == 200, await response.text()
    assert seed_runs(registry) == 1
    for result in ("ok", "error", "rejected_path"):
        assert key_fetches(registry, result) == 0


# -- recipients ------------------------------------------------------------------------------


def _batch_with_a_stranger() -> bytes:
    ours = json.loads(with_field(SEED, "recipientclientid", OUR_CLIENT_ID))
    theirs = json.loads(SEED_FAILURE)
    theirs[0]["recipientclientid"] = "someone-elses-client-id"  # on the messages envelope
    return json.dumps([ours, *theirs]).encode()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            with_field(SEED, "recipientclientid", "someone-elses-client-id"), id="one document"
        ),
        pytest.param(
            with_field(SEED, "recipient_client_id", "someone-elses-client-id"),
            id="deprecated field",
        ),
        pytest.param(_batch_with_a_stranger(), id="batch, one stranger's messages"),
    ],
)
async def test_a_foreign_recipient_is_refused(
    make_verified_client: MakeClient, signing_keys: SigningKeys, body: bytes
) -> None:
    """A signed delivery with any document naming another client id is refused whole (401)."""
    client, registry, _ = await make_verified_client(client_ids=[OUR_CLIENT_ID])
    response = await deliver(client, body, signed_by_both(signing_keys, body))
    assert response.status == 401
    assert rejected(registry, "recipient_mismatch") == 1
    assert_nothing_recorded(registry)


@pytest.mark.parametrize("field", ["recipientclientid", "recipient_client_id"])
async def test_our_recipient_in_either_field_is_accepted(
    make_verified_client: MakeClient, signing_keys: SigningKeys, field: str
) -> None:
    """Our client id, in the current or the deprecated field (§1.2), is accepted."""
    client, registry, _ = await make_verified_client(
        client_ids=["another-of-ours", OUR_CLIENT_ID], require_recipient=True
    )
    body = with_field(SEED, field, OUR_CLIENT_ID)
    response = await deliver(client, body, signed_by_both(signing_keys, body))
    assert response.status == 200, await response.text()
    assert seed_runs(registry) == 1
    assert registry.get_sample_value("aep_exporter_recipient_missing_total") == 0


async def test_an_absent_recipient_is_accepted_and_counted(
    make_verified_client: MakeClient, signing_keys: SigningKeys
) -> None:
    """A document without a recipient id is recorded and counted as recipient missing."""
    client, registry, _ = await make_verified_client(client_ids=[OUR_CLIENT_ID])
    response = await deliver(client, SEED, signed_by_both(signing_keys, SEED))
    assert response.status == 200, await response.text()
    assert seed_runs(registry) == 1
    assert registry.get_sample_value("aep_exporter_recipient_missing_total") == 1


async def test_an_absent_recipient_is_refused_when_required(
    make_verified_client: MakeClient, signing_keys: SigningKeys
) -> None:
    """With require_recipient, a document without a recipient id gets 401 recipient_missing."""
    client, registry, _ = await make_verified_client(
        client_ids=[OUR_CLIENT_ID], require_recipient=True
    )
    response = await deliver(client, SEED, signed_by_both(signing_keys, SEED))
    assert response.status == 401
    assert rejected(registry, "recipient_missing") == 1
    assert registry.get_sample_value("aep_exporter_recipient_missing_total") == 0
    assert_nothing_recorded(registry)


# -- verified bodies we cannot read ------------------------------------------------------------

UNREADABLE_BODIES = [
    pytest.param(b"{not json", id="not JSON"),
    pytest.param(b"", id="empty"),
    pytest.param(b"\xff\xfe{}", id="not UTF-8"),
    pytest.param(b"[" * 10_000, id="10000 open brackets"),
    pytest.param(b"[" * 10_000 + b"]" * 10_000, id="valid but 10000 deep"),
    pytest.param(b'{"a":' * 5_000 + b"1" + b"}" * 5_000, id="deep objects"),
]


@pytest.mark.parametrize("body", UNREADABLE_BODIES)
@pytest.mark.parametrize("require_recipient", [False, True])
async def test_a_signed_unreadable_body_is_dead_lettered(
    make_verified_client: MakeClient,
    signing_keys: SigningKeys,
    body: bytes,
    require_recipient: bool,
) -> None:
    """Signed but not usable JSON: 200 and stored as a dead letter, never refused, never 500."""
    client, registry, exporter = await make_verified_client(
        client_ids=[OUR_CLIENT_ID], require_recipient=require_recipient
    )
    headers = signed_by_both(signing_keys, body, x_adobe_event_id="evt-unreadable")
    response = await deliver(client, body, headers)
    assert response.status == 200, await response.text()
    assert notifications(registry, "unknown", "dead_lettered") == 1
    assert registry.get_sample_value("aep_exporter_dead_letters_stored") == 1
    assert registry.get_sample_value("aep_exporter_tracked_flows") == 0
    letters = await exporter.recorder.run_in_writer(exporter.recorder.store.dead_letters)
    assert [(letter.body, letter.event_id) for letter in letters] == [(body, "evt-unreadable")]
    assert letters[0].reason


# -- legacy HMAC, challenge, build info ------------------------------------------------------


def hmac_of(body: bytes, secret: str = SECRET) -> str:
    """The legacy x-adobe-signature: Base64 HMAC-SHA256 of the raw body (protocol notes §1.3.3)."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param(lambda keys: CIMultiDict({"x-adobe-signature": hmac_of(SEED)}), 200, id="ok"),
        pytest.param(
            lambda keys: CIMultiDict({"x-adobe-signature": hmac_of(SEED, "other-secret")}),
            401,
            id="wrong secret",
        ),
        pytest.param(
            lambda keys: CIMultiDict({"x-adobe-signature": hmac_of(_compact(SEED))}),
            401,
            id="over re-serialized JSON",
        ),
        pytest.param(
            lambda keys: signed_headers(
                (keys.stranger.sign(SEED), KEY1_PATH), x_adobe_signature=hmac_of(SEED)
            ),
            401,
            id="valid HMAC beside a bad digital signature",
        ),
    ],
)
async def test_legacy_hmac_over_http(
    make_verified_client: MakeClient,
    signing_keys: SigningKeys,
    headers: HeaderBuilder,
    status: int,
) -> None:
    """With a client secret, a valid HMAC is accepted unless a digital signature is present."""
    client, registry, _ = await make_verified_client(client_secret=SECRET)
    response = await deliver(client, SEED, headers(signing_keys))
    assert response.status == status
    if status == 200:
        assert seed_runs(registry) == 1
    else:
        assert rejected(registry, "bad_signature") == 1
        assert_nothing_recorded(registry)


async def test_the_challenge_needs_no_signature(
    make_verified_client: MakeClient, key_server: KeyServer
) -> None:
    """The registration GET is answered with its challenge, unsigned, with verification on."""
    client, _, _ = await make_verified_client()
    response = await client.get("/webhook", params={"challenge": "a1b2 c3&d4"})
    assert response.status == 200
    assert await response.text() == "a1b2 c3&d4"
    assert key_server.total_requests == 0


@pytest.mark.parametrize(("insecure", "verification"), [(False, "on"), (True, "off")])
async def test_build_info_names_the_verification_mode(
    make_verified_client: MakeClient, insecure: bool, verification: str
) -> None:
    """aep_exporter_build_info carries verification="on", or "off" in insecure mode, beside the
    revision ("unknown" outside an image build) and the Python version."""
    _, registry, _ = await make_verified_client(insecure_accept_unsigned=insecure)
    build = {"version": __version__, "revision": source_revision()}
    build["python_version"] = platform.python_version()
    labels = {**build, "verification": verification}
    assert registry.get_sample_value("aep_exporter_build_info", labels) == 1
    other = {**build, "verification": "off" if verification == "on" else "on"}
    assert registry.get_sample_value("aep_exporter_build_info", other) is None
