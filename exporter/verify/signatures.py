"""Delivery authenticity: Adobe's RSA-SHA256 digital signatures, and the legacy HMAC."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, utils

from exporter.rejections import Rejected, Rejection
from exporter.verify.keys import KeyPathRejected, KeyUnavailable, PublicKeyStore

log = logging.getLogger(__name__)

# (signature header, public key path header), in the order Adobe numbers them (protocol notes §1.2).
SIGNATURE_HEADERS = (
    ("x-adobe-digital-signature-1", "x-adobe-public-key1-path"),
    ("x-adobe-digital-signature-2", "x-adobe-public-key2-path"),
)
HMAC_HEADER = "x-adobe-signature"
# Bodies this large are hashed in a worker thread (hashlib releases the GIL): the largest body
# allowed takes milliseconds to hash, which anyone could make the event loop spend.
HASH_OFF_LOOP_BYTES = 64 * 1024
# RSASSA-PKCS1-v1_5 over a SHA-256 digest: the same for every signature, so built once.
_PADDING = padding.PKCS1v15()
_PREHASHED = utils.Prehashed(hashes.SHA256())


async def _off_loop_if_large(body: bytes, digest: Callable[[], bytes]) -> bytes:
    if len(body) < HASH_OFF_LOOP_BYTES:
        return digest()
    return await asyncio.to_thread(digest)


class _BodyDigest:
    """The SHA-256 of a body, computed at most once, and only once a key is at hand."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self._digest: bytes | None = None

    async def value(self) -> bytes:
        """The digest (both signatures sign the same bytes)."""
        if self._digest is None:
            body = self._body
            self._digest = await _off_loop_if_large(body, lambda: hashlib.sha256(body).digest())
        return self._digest


class DeliveryVerifier:
    """Proves a delivery came from Adobe I/O Events (protocol notes §1.3, §3)."""

    def __init__(self, *, keys: PublicKeyStore, client_secret: str = "") -> None:
        self._keys = keys
        self._client_secret = client_secret.encode("utf-8")

    async def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Return if the raw body is signed by Adobe, else raise Rejected."""
        pairs = [(headers.get(sig), headers.get(path)) for sig, path in SIGNATURE_HEADERS]
        if not any(signature for signature, _ in pairs):
            await self._verify_hmac(headers, body)
            return
        # A digital signature is present, so the legacy HMAC is never consulted (reference
        # §1.3.3): a stale client secret must not open a second way in.
        key_missing = False
        digest = _BodyDigest(body)
        for number, (signature, path) in enumerate(pairs, start=1):
            if not signature:
                continue
            try:
                if await self._signature_verifies(signature, path, digest):
                    return
            except KeyUnavailable as exc:
                # Adobe retries a 5xx for 24 h (protocol notes §1.5): the key host may come back.
                key_missing = True
                log.debug("signature not checked", extra={"number": number, "error": str(exc)})
        if key_missing:
            raise Rejected(Rejection.KEY_UNAVAILABLE, "a signing key could not be fetched")
        raise Rejected(Rejection.BAD_SIGNATURE, "no digital signature verifies")

    async def _signature_verifies(
        self, signature: str, path: str | None, digest: _BodyDigest
    ) -> bool:
        # "if any one of the signature validations is successful, then the event is valid";
        # RSASSA-PKCS1-v1_5 with SHA-256 over the raw bytes, Base64 signature (protocol notes
        # §1.3.1).
        try:
            signature_bytes = base64.b64decode(signature, validate=True)
        except ValueError:  # binascii.Error, or non-ASCII text
            log.debug("signature is not Base64")
            return False
        if not path:
            log.debug("signature without a public key path")
            return False
        try:
            key = await self._keys.get(path)
        except KeyPathRejected as exc:
            log.debug("signature key path refused", extra={"error": str(exc)})
            return False
        try:
            key.verify(signature_bytes, await digest.value(), _PADDING, _PREHASHED)
        except (InvalidSignature, ValueError):
            log.debug("signature does not verify with key", extra={"path": path})
            return False
        return True

    async def _verify_hmac(self, headers: Mapping[str, str], body: bytes) -> None:
        # Legacy: Base64(HMAC-SHA256(raw body, client secret)) (protocol notes §1.3.3).
        header = headers.get(HMAC_HEADER)
        if not self._client_secret or not header:
            raise Rejected(Rejection.MISSING_SIGNATURE, "no digital signature")
        secret = self._client_secret
        expected = await _off_loop_if_large(
            body, lambda: hmac.new(secret, body, hashlib.sha256).digest()
        )
        try:
            given = base64.b64decode(header, validate=True)
        except ValueError:
            raise Rejected(Rejection.BAD_SIGNATURE, "HMAC signature is not Base64") from None
        if not hmac.compare_digest(expected, given):
            raise Rejected(Rejection.BAD_SIGNATURE, "HMAC signature does not match")
