"""Delivery signatures: Adobe's RSA-SHA256 signatures and the legacy HMAC (protocol notes §1.3)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest
from multidict import CIMultiDict

from exporter.rejections import Rejected
from exporter.verify.signatures import DeliveryVerifier
from tests.verify.conftest import (
    GONE_PATH,
    KEY1_PATH,
    KEY2_PATH,
    FakeClock,
    KeyServer,
    SigningKeys,
    StoreFactory,
    signed_headers,
)

# Whitespace and key order as Adobe might send them: re-serializing changes the bytes.
BODY = b'{"event_id": "e-1",  "event": {"flowId": "f-1", "sandboxName": "prod"}}'
SECRET = "s3cr3t-client-secret"


def hmac_of(body: bytes, secret: str = SECRET) -> str:
    """The legacy x-adobe-signature value: Base64 HMAC-SHA256 of the raw body."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


async def rejection(verifier: DeliveryVerifier, headers: CIMultiDict[str], body: bytes) -> str:
    """The reason the verifier refuses the delivery (fails the test if it accepts it)."""
    with pytest.raises(Rejected) as caught:
        await verifier.verify(headers, body)
    return caught.value.reason.value


@pytest.fixture
def verifier(make_store: StoreFactory) -> DeliveryVerifier:
    """A verifier against the loopback key host, without a client secret."""
    return DeliveryVerifier(keys=make_store())


@pytest.fixture
def hmac_verifier(make_store: StoreFactory) -> DeliveryVerifier:
    """A verifier against the loopback key host, with a client secret for legacy HMAC."""
    return DeliveryVerifier(keys=make_store(), client_secret=SECRET)


async def test_a_valid_signature_on_key_one_is_accepted(
    verifier: DeliveryVerifier, signing_keys: SigningKeys, fetches: list[str]
) -> None:
    """Signature 1 verifying is enough, and key 2 is never fetched."""
    headers = signed_headers(
        (signing_keys.one.sign(BODY), KEY1_PATH), (signing_keys.two.sign(BODY), KEY2_PATH)
    )
    await verifier.verify(headers, BODY)
    assert fetches == ["ok"]


async def test_a_valid_signature_on_key_two_only_is_accepted(
    verifier: DeliveryVerifier, signing_keys: SigningKeys, fetches: list[str]
) -> None:
    """Signature 2 verifying is enough when signature 1 is absent."""
    await verifier.verify(signed_headers(None, (signing_keys.two.sign(BODY), KEY2_PATH)), BODY)
    assert fetches == ["ok"]


async def test_a_bad_signature_one_is_saved_by_signature_two(
    verifier: DeliveryVerifier, signing_keys: SigningKeys, fetches: list[str]
) -> None:
    """Either signature verifying accepts the delivery (protocol notes §1.3.1)."""
    headers = signed_headers(
        (signing_keys.stranger.sign(BODY), KEY1_PATH), (signing_keys.two.sign(BODY), KEY2_PATH)
    )
    await verifier.verify(headers, BODY)
    assert fetches == ["ok", "ok"]


async def test_lower_case_plain_mapping_works(
    verifier: DeliveryVerifier, signing_keys: SigningKeys
) -> None:
    """Headers given as a plain dict with lower-case names are read too."""
    headers = {
        "x-adobe-digital-signature-1": signing_keys.one.sign(BODY),
        "x-adobe-public-key1-path": KEY1_PATH,
    }
    await verifier.verify(headers, BODY)


async def test_neither_signature_verifying_is_a_bad_signature(
    verifier: DeliveryVerifier, signing_keys: SigningKeys
) -> None:
    """Two signatures from a stranger's key are refused as bad_signature."""
    headers = signed_headers(
        (signing_keys.stranger.sign(BODY), KEY1_PATH),
        (signing_keys.stranger.sign(BODY), KEY2_PATH),
    )
    assert await rejection(verifier, headers, BODY) == "bad_signature"


async def test_a_signature_over_reserialized_json_is_bad(
    verifier: DeliveryVerifier, signing_keys: SigningKeys
) -> None:
    """Signatures cover the raw bytes: one over the same JSON re-serialized does not verify."""
    reserialized = json.dumps(json.loads(BODY)).encode()
    assert reserialized != BODY
    headers = signed_headers((signing_keys.one.sign(reserialized), KEY1_PATH))
    assert await rejection(verifier, headers, BODY) == "bad_signature"


async def test_a_tampered_body_is_bad(
    verifier: DeliveryVerifier, signing_keys: SigningKeys
) -> None:
    """Changing one byte of a signed body breaks both signatures."""
    headers = signed_headers(
        (signing_keys.one.sign(BODY), KEY1_PATH), (signing_keys.two.sign(BODY), KEY2_PATH)
    )
    assert await rejection(verifier, headers, BODY.replace(b"f-1", b"f-2")) == "bad_signature"


async def test_swapped_key_paths_are_bad(
    verifier: DeliveryVerifier, signing_keys: SigningKeys
) -> None:
    """Each signature is checked with its own key path only, never with the other one."""
    headers = signed_headers(
        (signing_keys.one.sign(BODY), KEY2_PATH), (signing_keys.two.sign(BODY), KEY1_PATH)
    )
    assert await rejection(verifier, headers, BODY) == "bad_signature"


@pytest.mark.parametrize("signature", ["%%% not base64 %%%", "AAA", "\u00e9t\u00e9", " ", "=="])
async def test_malformed_base64_is_bad_without_a_fetch(
    verifier: DeliveryVerifier, signature: str, fetches: list[str], key_server: KeyServer
) -> None:
    """A signature that is not Base64 is refused as bad_signature, and no key is fetched."""
    headers = signed_headers((signature, KEY1_PATH))
    assert await rejection(verifier, headers, BODY) == "bad_signature"
    assert fetches == []
    assert key_server.total_requests == 0


async def test_a_signature_without_its_key_path_is_bad(
    verifier: DeliveryVerifier, signing_keys: SigningKeys
) -> None:
    """A signature header without the matching key path header does not verify."""
    headers = CIMultiDict({"x-adobe-digital-signature-1": signing_keys.one.sign(BODY)})
    assert await rejection(verifier, headers, BODY) == "bad_signature"


@pytest.mark.parametrize(
    "path", ["//evil.example/x.pem", "https://evil.example/x.pem", "/prod/keys/%2e%2e/x.pem"]
)
async def test_a_hostile_key_path_is_bad_without_a_request(
    verifier: DeliveryVerifier,
    signing_keys: SigningKeys,
    path: str,
    fetches: list[str],
    key_server: KeyServer,
) -> None:
    """A refused key path counts rejected_path and the signature does not verify."""
    headers = signed_headers((signing_keys.one.sign(BODY), path))
    assert await rejection(verifier, headers, BODY) == "bad_signature"
    assert fetches == ["rejected_path"]
    assert key_server.total_requests == 0


async def test_an_unavailable_key_is_key_unavailable(
    verifier: DeliveryVerifier, signing_keys: SigningKeys, key_server: KeyServer
) -> None:
    """A valid-looking signature whose key cannot be fetched is key_unavailable (503)."""
    await key_server.stop()
    headers = signed_headers(
        (signing_keys.one.sign(BODY), KEY1_PATH), (signing_keys.two.sign(BODY), KEY2_PATH)
    )
    assert await rejection(verifier, headers, BODY) == "key_unavailable"


async def test_one_unavailable_key_and_one_bad_signature_is_key_unavailable(
    verifier: DeliveryVerifier, signing_keys: SigningKeys, fetches: list[str]
) -> None:
    """When a key that might have verified is missing, Adobe is asked to retry."""
    headers = signed_headers(
        (signing_keys.one.sign(BODY), GONE_PATH), (signing_keys.stranger.sign(BODY), KEY2_PATH)
    )
    assert await rejection(verifier, headers, BODY) == "key_unavailable"
    assert fetches == ["error", "ok"]


async def test_one_unavailable_key_and_one_good_signature_is_accepted(
    verifier: DeliveryVerifier, signing_keys: SigningKeys
) -> None:
    """The other signature verifying is enough when one key is missing."""
    headers = signed_headers(
        (signing_keys.one.sign(BODY), GONE_PATH), (signing_keys.two.sign(BODY), KEY2_PATH)
    )
    await verifier.verify(headers, BODY)


async def test_verification_recovers_when_the_key_host_is_back(
    verifier: DeliveryVerifier,
    signing_keys: SigningKeys,
    key_server: KeyServer,
    fetches: list[str],
    clock: FakeClock,
) -> None:
    """key_unavailable while the key host serves garbage, accepted once it serves the key."""
    key_server.mode = "garbage"
    headers = signed_headers((signing_keys.one.sign(BODY), KEY1_PATH))
    assert await rejection(verifier, headers, BODY) == "key_unavailable"
    key_server.mode = "up"
    clock.advance(60.0)
    await verifier.verify(headers, BODY)
    assert fetches == ["error", "ok"]


async def test_fifty_concurrent_cold_verifications_fetch_once(
    verifier: DeliveryVerifier,
    signing_keys: SigningKeys,
    key_server: KeyServer,
    fetches: list[str],
) -> None:
    """Fifty deliveries arriving together before any key is cached cause one key request."""
    key_server.delay = 0.05
    headers = signed_headers((signing_keys.one.sign(BODY), KEY1_PATH))
    async with asyncio.timeout(10):
        await asyncio.gather(*(verifier.verify(headers, BODY) for _ in range(50)))
    assert key_server.requests == {KEY1_PATH: 1}
    assert fetches == ["ok"]


async def test_a_pinned_key_verifies_with_the_key_host_down(
    make_store: StoreFactory,
    signing_keys: SigningKeys,
    key_server: KeyServer,
    fetches: list[str],
    pinned_dir: Path,
) -> None:
    """A delivery signed with a pinned key is accepted while the key host is unreachable."""
    (pinned_dir / "pub-key-one.pem").write_bytes(signing_keys.one.public_pem)
    verifier = DeliveryVerifier(keys=make_store(pinned_dir=pinned_dir))
    await key_server.stop()
    await verifier.verify(signed_headers((signing_keys.one.sign(BODY), KEY1_PATH)), BODY)
    assert fetches == []


async def test_no_signature_at_all_is_missing_signature(verifier: DeliveryVerifier) -> None:
    """A delivery with no signature header is refused as missing_signature."""
    assert await rejection(verifier, CIMultiDict(), BODY) == "missing_signature"


async def test_an_hmac_without_a_configured_secret_is_missing_signature(
    verifier: DeliveryVerifier,
) -> None:
    """An HMAC header alone is not enough when no client secret is configured."""
    headers = CIMultiDict({"x-adobe-signature": hmac_of(BODY)})
    assert await rejection(verifier, headers, BODY) == "missing_signature"


async def test_no_hmac_header_with_a_secret_is_missing_signature(
    hmac_verifier: DeliveryVerifier,
) -> None:
    """A configured secret does not make an unsigned delivery acceptable."""
    assert await rejection(hmac_verifier, CIMultiDict(), BODY) == "missing_signature"


async def test_a_valid_hmac_is_accepted(
    hmac_verifier: DeliveryVerifier, fetches: list[str]
) -> None:
    """A legacy HMAC of the raw body with the client secret is accepted, and no key is fetched."""
    await hmac_verifier.verify(CIMultiDict({"X-Adobe-Signature": hmac_of(BODY)}), BODY)
    assert fetches == []


@pytest.mark.parametrize(
    "signature",
    [
        hmac_of(BODY, secret="another secret"),
        hmac_of(json.dumps(json.loads(BODY)).encode()),
        "not base64!",
        "\u00e9",
    ],
    ids=["wrong-secret", "reserialized", "not-base64", "non-ascii"],
)
async def test_an_invalid_hmac_is_bad(hmac_verifier: DeliveryVerifier, signature: str) -> None:
    """An HMAC that does not match the raw body and secret is refused as bad_signature."""
    headers = CIMultiDict({"x-adobe-signature": signature})
    assert await rejection(hmac_verifier, headers, BODY) == "bad_signature"


async def test_hmac_is_ignored_when_digital_signatures_are_present(
    hmac_verifier: DeliveryVerifier, signing_keys: SigningKeys
) -> None:
    """A valid HMAC does not rescue a delivery whose digital signatures do not verify."""
    headers = signed_headers(
        (signing_keys.stranger.sign(BODY), KEY1_PATH), x_adobe_signature=hmac_of(BODY)
    )
    assert await rejection(hmac_verifier, headers, BODY) == "bad_signature"
