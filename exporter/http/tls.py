"""TLS for the metrics listener: exporter-toolkit's settings mapped to Python's ssl."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from exporter.domain import ExporterError


class WebConfigError(ExporterError):
    """The web config file cannot be used; the message names the file and the problem."""


CLIENT_AUTH = {
    "": ssl.CERT_NONE,
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# exporter-toolkit keeps "RequireClientCert" as an alias of RequireAnyClientCert.
CLIENT_AUTH_REFUSED = ("RequireAnyClientCert", "RequireClientCert")
TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
TLS_VERSIONS_REFUSED = ("TLS10", "TLS11")
# Go's tls.CipherSuites() names for TLS 1.2 and before, as OpenSSL spells them.
TLS12_CIPHERS = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
# TLS 1.3 suites cannot be chosen in Go's crypto/tls nor in Python's ssl.
TLS13_CIPHERS = (
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
)
CURVES = ("CurveP256", "CurveP384", "CurveP521", "X25519")


@dataclass(frozen=True)
class TLSSettings:
    """The TLS part of a web config, paths resolved, mapped to Python's ssl."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None
    verify_mode: ssl.VerifyMode
    minimum_version: ssl.TLSVersion
    maximum_version: ssl.TLSVersion
    # OpenSSL cipher string for TLS 1.2; None keeps OpenSSL's defaults.
    ciphers: str | None
    prefer_server_ciphers: bool


def resolve_path(base: Path, name: str) -> Path:
    """A path of the config file, relative to the file's directory unless absolute."""
    # Relative to the config file's directory, as exporter-toolkit's SetDirectory does.
    path = Path(name)
    return path if path.is_absolute() else base / path


def server_context(config_path: Path, tls: TLSSettings) -> ssl.SSLContext:
    """A server SSLContext from the settings; WebConfigError naming the file that is wrong."""

    def fail(problem: str) -> WebConfigError:
        return WebConfigError(f"web config {config_path}: {problem}")

    cert_pem = _read(tls.cert_file, "cert_file", fail)
    key_pem = _read(tls.key_file, "key_file", fail)
    # cryptography first, for messages that say which file is wrong; ssl's say "PEM lib".
    try:
        certificate = x509.load_pem_x509_certificates(cert_pem)[0]
    except ValueError:
        raise fail(f"cert_file ({tls.cert_file}) holds no PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise fail(f"key_file ({tls.key_file}) is encrypted; give an unencrypted key") from None
    except ValueError:
        raise fail(f"key_file ({tls.key_file}) holds no PEM private key") from None
    if _public_der(certificate.public_key()) != _public_der(key.public_key()):
        raise fail(
            f"failed to load X509KeyPair: private key in key_file ({tls.key_file}) "
            f"does not match the certificate in cert_file ({tls.cert_file})"
        )

    if tls.client_ca_file is not None:
        try:
            x509.load_pem_x509_certificates(_read(tls.client_ca_file, "client_ca_file", fail))
        except ValueError:
            raise fail(f"client_ca_file ({tls.client_ca_file}) holds no PEM certificate") from None

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = tls.minimum_version
    context.maximum_version = tls.maximum_version
    if not tls.prefer_server_ciphers:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        if tls.ciphers:
            context.set_ciphers(tls.ciphers)
        context.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.client_ca_file is not None:
            context.load_verify_locations(cafile=tls.client_ca_file)
    except ssl.SSLError as exc:
        raise fail(f"TLS setup failed: {exc.reason or exc}") from None
    context.verify_mode = tls.verify_mode
    return context


def _read(path: Path, field_name: str, fail: Callable[[str], WebConfigError]) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise fail(f"failed to read {field_name} ({path}): {exc.strerror}") from None


def _public_der(key: Any) -> bytes:
    return bytes(
        key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
