"""Fixtures for the web config tests: a generated PKI, config files, a TLS server on loopback."""

from __future__ import annotations

import base64
import shutil
import ssl
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

import aiohttp
import bcrypt
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from multidict import CIMultiDict

from exporter.http.webconfig import PasswordCheck, WebConfig, load_web_config

# Low cost keeps each check around a millisecond; the middleware treats every cost alike.
BCRYPT_ROUNDS = 4
PASSWORDS = {"alice": "alice-secret", "bob": "correct horse"}
CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=5)


@dataclass(frozen=True)
class PKI:
    """PEM files: a CA, a server certificate it signed, clients of it and of another CA."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # a client signed by an unrelated CA
    stranger_key: Path
    encrypted_key: Path  # the server key, encrypted with a passphrase


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _ca(common_name: str, key: rsa.RSAPrivateKey) -> x509.Certificate:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _leaf(
    common_name: str,
    key: rsa.RSAPrivateKey,
    ca: x509.Certificate,
    ca_key: rsa.RSAPrivateKey,
    usage: x509.ObjectIdentifier,
) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(ca_key, hashes.SHA256())


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _write_key(path: Path, key: rsa.RSAPrivateKey, passphrase: bytes = b"") -> Path:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    return path


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    """Generate the RSA keys and certificates once per session (key generation is the slow part)."""
    out = tmp_path_factory.mktemp("pki")
    ca_key, stranger_ca_key = _new_key(), _new_key()
    server_key, client_key, stranger_key = _new_key(), _new_key(), _new_key()
    ca = _ca("test CA", ca_key)
    stranger_ca = _ca("unrelated CA", stranger_ca_key)
    return PKI(
        ca_cert=_write_cert(out / "ca.crt", ca),
        server_cert=_write_cert(
            out / "server.crt",
            _leaf("127.0.0.1", server_key, ca, ca_key, ExtendedKeyUsageOID.SERVER_AUTH),
        ),
        server_key=_write_key(out / "server.key", server_key),
        client_cert=_write_cert(
            out / "client.crt",
            _leaf("scraper", client_key, ca, ca_key, ExtendedKeyUsageOID.CLIENT_AUTH),
        ),
        client_key=_write_key(out / "client.key", client_key),
        stranger_cert=_write_cert(
            out / "stranger.crt",
            _leaf(
                "stranger",
                stranger_key,
                stranger_ca,
                stranger_ca_key,
                ExtendedKeyUsageOID.CLIENT_AUTH,
            ),
        ),
        stranger_key=_write_key(out / "stranger.key", stranger_key),
        encrypted_key=_write_key(out / "encrypted.key", server_key, b"passphrase"),
    )


@pytest.fixture(scope="session")
def password_hashes() -> dict[str, str]:
    """bcrypt hashes of PASSWORDS at cost 4: alice's in htpasswd's $2y$ spelling, bob's as $2b$."""
    hashed = {
        user: bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_ROUNDS)).decode()
        for user, password in PASSWORDS.items()
    }
    hashed["alice"] = "$2y$" + hashed["alice"].removeprefix("$2b$")
    return hashed


@pytest.fixture
def config_dir(tmp_path: Path, pki: PKI) -> Path:
    """A directory holding copies of the PEM files, where web config files are written."""
    for source in (
        pki.ca_cert,
        pki.server_cert,
        pki.server_key,
        pki.client_cert,
        pki.client_key,
        pki.encrypted_key,
    ):
        shutil.copy(source, tmp_path / source.name)
    return tmp_path


@pytest.fixture
def write_config(config_dir: Path) -> Callable[[str], Path]:
    """Write YAML (dedented) as web.yml beside the PEM files and return its path."""

    def write(text: str) -> Path:
        path = config_dir / "web.yml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


@pytest.fixture
def auth_config(write_config: Callable[[str], Path], password_hashes: dict[str, str]) -> WebConfig:
    """TLS, alice ($2y$ hash) and bob ($2b$ hash), and two extra headers."""
    users = "".join(f"  {user}: '{hashed}'\n" for user, hashed in password_hashes.items())
    return load_web_config(
        write_config(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            "http_server_config:\n  headers:\n"
            "    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n"
            "basic_auth_users:\n" + users
        )
    )


class CountingCheck:
    """The real bcrypt.checkpw, counting its calls: the seam for "was bcrypt run?"."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        self.calls += 1
        return bcrypt.checkpw(password, hashed)


async def _describe_tls(request: web.Request) -> web.Response:
    """The test endpoint: reports the negotiated cipher, so tests can see what TLS chose."""
    cipher = request.transport.get_extra_info("cipher") if request.transport else None
    return web.Response(text=cipher[0] if cipher else "plain")


Serve = Callable[..., Awaitable[int]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start real servers on 127.0.0.1 (port 0) with a config's SSLContext and middleware."""
    runners: list[web.AppRunner] = []

    async def start(config: WebConfig, check_password: PasswordCheck = bcrypt.checkpw) -> int:
        app = web.Application(middlewares=[config.middleware(check_password)])
        app.router.add_get("/metrics", _describe_tls)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=config.ssl_context())
        await site.start()
        port: int = runner.addresses[0][1]
        return port

    yield start
    for runner in runners:
        await runner.cleanup()


@dataclass(frozen=True)
class Reply:
    """What a client saw: status, headers, body."""

    status: int
    headers: CIMultiDict[str]
    body: str


async def fetch(
    url: str,
    *,
    trust: ssl.SSLContext | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """GET url in a fresh session, bounded by CLIENT_TIMEOUT."""
    async with (
        aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session,
        session.get(url, ssl=trust if trust is not None else True, headers=headers) as response,
    ):
        return Reply(response.status, CIMultiDict(response.headers), await response.text())


async def refused(url: str, trust: ssl.SSLContext | None = None) -> None:
    """Assert that a GET of url ends in a client error other than a timeout."""
    with pytest.raises(aiohttp.ClientError) as caught:
        await fetch(url, trust=trust)
    assert not isinstance(caught.value, TimeoutError), f"timed out, not refused: {caught.value!r}"


def basic_auth(user: str, password: str) -> dict[str, str]:
    """An Authorization header with these credentials, UTF-8 encoded (RFC 7617)."""
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return {"Authorization": f"Basic {encoded}"}


def client_context(pki: PKI, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """A client SSLContext that trusts the test CA, optionally presenting a certificate."""
    context = ssl.create_default_context(cafile=pki.ca_cert)
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


@pytest.fixture
def cwd_elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Run the test from an unrelated working directory, to prove paths do not depend on it."""
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(elsewhere)
        yield elsewhere
