"""Delivery authenticity: Adobe's RSA-SHA256 digital signatures, legacy HMAC, recipient ids."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from exporter.domain import Document, ExporterError
from exporter.metrics.families import RejectReason
from exporter.verify.keys import KeyPathRejected, KeyUnavailable, PublicKeyStore

logger = logging.getLogger(__name__)

# (signature header, public key path header), in the order Adobe numbers them (reference §1.2).
SIGNATURE_HEADERS = (
    ("x-adobe-digital-signature-1", "x-adobe-public-key1-path"),
    ("x-adobe-digital-signature-2", "x-adobe-public-key2-path"),
)
HMAC_HEADER = "x-adobe-signature"


class VerificationFailure(ExporterError):
    """The delivery is refused; `reason` says why (401, or 503 for key_unavailable)."""

    def __init__(self, reason: RejectReason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason: RejectReason = reason


class DeliveryVerifier:
    """Proves a delivery came from Adobe I/O Events (reference §1.3, §3)."""

    def __init__(self, *, keys: PublicKeyStore, client_secret: str = "") -> None:
        self._keys = keys
        self._client_secret = client_secret.encode("utf-8")

    async def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Return if the raw body is signed by Adobe, else raise VerificationFailure."""
        pairs = [(headers.get(sig), headers.get(path)) for sig, path in SIGNATURE_HEADERS]
        if not any(signature for signature, _ in pairs):
            self._verify_hmac(headers, body)
            return
        # A digital signature is present, so the legacy HMAC is never consulted (reference
        # §1.3.3): a stale client secret must not open a second way in.
        key_missing = False
        for number, (signature, path) in enumerate(pairs, start=1):
            if not signature:
                continue
            try:
                if await self._signature_verifies(signature, path, body):
                    return
            except KeyUnavailable as exc:
                # Adobe retries a 5xx for 24 h (reference §1.5): the key host may come back.
                key_missing = True
                logger.debug("signature %d not checked: %s", number, exc)
        if key_missing:
            raise VerificationFailure(
                RejectReason.KEY_UNAVAILABLE, "a signing key could not be fetched"
            )
        raise VerificationFailure(RejectReason.BAD_SIGNATURE, "no digital signature verifies")

    async def _signature_verifies(self, signature: str, path: str | None, body: bytes) -> bool:
        # "if any one of the signature validations is successful, then the event is valid";
        # RSASSA-PKCS1-v1_5 with SHA-256 over the raw bytes, Base64 signature (reference §1.3.1).
        try:
            signature_bytes = base64.b64decode(signature, validate=True)
        except ValueError:  # binascii.Error, or non-ASCII text
            logger.debug("signature is not Base64")
            return False
        if not path:
            logger.debug("signature without a public key path")
            return False
        try:
            key = await self._keys.get(path)
        except KeyPathRejected as exc:
            logger.debug("%s", exc)
            return False
        try:
            key.verify(signature_bytes, body, padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError):
            logger.debug("signature does not verify with key path=%s", path)
            return False
        return True

    def _verify_hmac(self, headers: Mapping[str, str], body: bytes) -> None:
        # Legacy: Base64(HMAC-SHA256(raw body, client secret)) (reference §1.3.3).
        header = headers.get(HMAC_HEADER)
        if not self._client_secret or not header:
            raise VerificationFailure(RejectReason.MISSING_SIGNATURE, "no digital signature")
        expected = hmac.new(self._client_secret, body, hashlib.sha256).digest()
        try:
            given = base64.b64decode(header, validate=True)
        except ValueError:
            raise VerificationFailure(
                RejectReason.BAD_SIGNATURE, "HMAC signature is not Base64"
            ) from None
        if not hmac.compare_digest(expected, given):
            raise VerificationFailure(RejectReason.BAD_SIGNATURE, "HMAC signature does not match")


def check_recipients(
    documents: Sequence[Document], *, client_ids: frozenset[str], require: bool
) -> int:
    """Refuse documents naming another recipient (or none, if required); count those naming none."""
    if not client_ids:
        return 0
    missing = 0
    for document in documents:
        if not document.recipient:
            missing += 1
        # Client ids are API keys, not secrets: plain set membership is fine here.
        elif document.recipient not in client_ids:
            raise VerificationFailure(
                RejectReason.RECIPIENT_MISMATCH, "a document names another recipient"
            )
    # AEP may not send a recipient id at all (reference §6 item 2), hence opt-in strictness.
    if missing and require:
        raise VerificationFailure(
            RejectReason.RECIPIENT_MISSING, f"{missing} document(s) without recipient"
        )
    return missing
