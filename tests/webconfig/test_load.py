"""Loading web config files: what is accepted, and the one-line errors for what is not."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.domain import ExporterError
from exporter.http.webconfig import WebConfigError, load_web_config
from tests.support import log_text
from tests.webconfig.conftest import PKI

TLS = """\
tls_server_config:
  cert_file: server.crt
  key_file: server.key
"""


def load_error(path: Path) -> str:
    """The message of the WebConfigError that loading path raises, checked to be one line."""
    with pytest.raises(WebConfigError) as caught:
        load_web_config(path)
    message = str(caught.value)
    assert message.startswith(f"web config {path}: ")
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("tls_server_configs: {}\n", "unknown field tls_server_configs", id="top"),
        pytest.param(
            TLS + "  cipher_suite: []\n",
            "unknown field tls_server_config.cipher_suite",
            id="tls-field",
        ),
        pytest.param(
            "http_server_config:\n  header: {}\n",
            "unknown field http_server_config.header",
            id="http-field",
        ),
        pytest.param(
            TLS + "  client_auth_type: RequireAndVerifyClientCert\n",
            "tls_server_config: client_auth_type RequireAndVerifyClientCert needs client_ca_file",
            id="verify-without-ca",
        ),
        pytest.param(
            TLS + "  client_auth_type: VerifyClientCertIfGiven\n",
            "client_auth_type VerifyClientCertIfGiven needs client_ca_file",
            id="verify-if-given-without-ca",
        ),
        pytest.param(
            TLS + "  client_ca_file: ca.crt\n",
            "client_ca_file is set without a client_auth_type that uses it",
            id="ca-without-auth-type",
        ),
        pytest.param(
            TLS + "  client_auth_type: RequireAnyClientCert\n",
            "RequireAnyClientCert is not supported: Python's ssl cannot require a client "
            "certificate without verifying it",
            id="require-any",
        ),
        pytest.param(
            TLS + "  client_auth_type: Sometimes\n",
            "invalid ClientAuth: Sometimes",
            id="bad-auth-type",
        ),
        pytest.param(
            TLS + "  min_version: TLS11\n",
            "tls_server_config.min_version: TLS11 is not supported",
            id="tls11",
        ),
        pytest.param(TLS + "  max_version: SSL3\n", "unknown TLS version: SSL3", id="version"),
        pytest.param(
            TLS + "  min_version: TLS13\n  max_version: TLS12\n",
            "min_version TLS13 is above max_version TLS12",
            id="min-above-max",
        ),
        pytest.param(
            TLS + "  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n",
            "unknown cipher: TLS_RSA_WITH_RC4_128_SHA",
            id="cipher",
        ),
        pytest.param(
            TLS + "  curve_preferences: [CurveP224]\n", "unknown curve: CurveP224", id="curve"
        ),
        pytest.param(
            "tls_server_config:\n  cert_file: server.crt\n",
            "tls_server_config: missing key_file",
            id="no-key",
        ),
        pytest.param(
            "tls_server_config:\n  key_file: server.key\n",
            "tls_server_config: missing cert_file",
            id="no-cert",
        ),
        pytest.param(
            TLS + "  cert: inline\n",
            "cert is not supported by aep-flow-exporter; use cert_file",
            id="inline-cert",
        ),
        pytest.param(
            TLS + "  client_allowed_sans: [scraper]\n",
            "client_allowed_sans is not supported by aep-flow-exporter",
            id="allowed-sans",
        ),
        pytest.param(
            "rate_limit: {burst: 10, interval: 1s}\n",
            "rate_limit is not supported by aep-flow-exporter",
            id="rate-limit",
        ),
        pytest.param(
            "http_server_config:\n  headers: {X-Powered-By: me}\n",
            "HTTP header 'X-Powered-By' can not be configured",
            id="header-name",
        ),
        pytest.param(
            "http_server_config:\n  headers: {X-Frame-Options: allow}\n",
            "invalid value for X-Frame-Options. Expected one of: ['deny', 'sameorigin'], "
            "but got: 'allow'",
            id="header-value",
        ),
        pytest.param(
            "http_server_config:\n  http2: maybe\n",
            "http_server_config.http2: Input should be a valid boolean",
            id="http2-type",
        ),
        pytest.param("- a\n- b\n", "must be a mapping", id="list"),
        pytest.param("tls_server_config: [a]\n", "tls_server_config: must be a mapping", id="sec"),
        pytest.param(
            "basic_auth_users:\n  alice: a\n  alice: b\n",
            "invalid YAML at line 3: duplicate key 'alice'",
            id="duplicate-user",
        ),
        pytest.param("basic_auth_users: {alice: [\n", "invalid YAML at line 2", id="syntax"),
    ],
)
def test_invalid_file_names_file_and_problem(
    write_config: Callable[[str], Path], text: str, expected: str
) -> None:
    """An invalid config raises WebConfigError with one line naming the file and the problem."""
    message = load_error(write_config(text))
    assert expected in message


@pytest.mark.parametrize(
    "hashed",
    [
        pytest.param("plaintext-password", id="plain"),
        pytest.param("$2x$04$" + "a" * 53, id="2x"),
        pytest.param("$2b$03$" + "a" * 53, id="cost-3"),
        pytest.param("$2b$04$" + "a" * 52, id="short"),
        pytest.param("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", id="sha1"),
    ],
)
def test_non_bcrypt_password_is_refused_without_echo(
    write_config: Callable[[str], Path], hashed: str
) -> None:
    """A basic_auth_users value that is not a bcrypt hash is refused; the message hides it."""
    message = load_error(write_config(f"basic_auth_users:\n  alice: '{hashed}'\n"))
    assert "password of user 'alice' is not a bcrypt hash" in message
    assert hashed not in message


def test_missing_cert_file_is_named_with_resolved_path(
    write_config: Callable[[str], Path], config_dir: Path
) -> None:
    """A cert_file that cannot be read is named with its resolved path and the OS reason."""
    path = write_config(TLS.replace("server.crt", "missing.crt"))
    message = load_error(path)
    assert f"failed to read cert_file ({config_dir / 'missing.crt'}): No such file" in message


def test_missing_client_ca_file_is_named(write_config: Callable[[str], Path]) -> None:
    """A client_ca_file that cannot be read is an error at load."""
    path = write_config(
        TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: nope.crt\n"
    )
    assert "failed to read client_ca_file (" in load_error(path)


def test_mismatched_key_is_refused(write_config: Callable[[str], Path]) -> None:
    """A key_file whose key does not belong to cert_file's certificate is refused at load."""
    message = load_error(write_config(TLS.replace("server.key", "client.key")))
    assert "failed to load X509KeyPair: private key in key_file (" in message
    assert "does not match the certificate in cert_file (" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(TLS.replace("server.crt", "server.key"), "cert_file (", id="key-as-cert"),
        pytest.param(TLS.replace("server.key", "server.crt"), "key_file (", id="cert-as-key"),
        pytest.param(
            TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: server.key\n",
            "client_ca_file (",
            id="key-as-ca",
        ),
    ],
)
def test_wrong_pem_content_names_the_field(
    write_config: Callable[[str], Path], text: str, expected: str
) -> None:
    """A PEM file of the wrong kind is named by its field, not by a generic OpenSSL error."""
    message = load_error(write_config(text))
    assert expected in message
    assert "holds no PEM" in message


def test_encrypted_key_is_refused(write_config: Callable[[str], Path]) -> None:
    """An encrypted key_file is refused with a hint (exporter-toolkit cannot use one either)."""
    message = load_error(write_config(TLS.replace("server.key", "encrypted.key")))
    assert "is encrypted; give an unencrypted key" in message


def test_unreadable_config_file(tmp_path: Path) -> None:
    """A config path that does not exist is a WebConfigError, an ExporterError."""
    path = tmp_path / "absent.yml"
    message = load_error(path)
    assert "cannot read: No such file or directory" in message
    assert issubclass(WebConfigError, ExporterError)


def test_empty_file_turns_everything_off(write_config: Callable[[str], Path]) -> None:
    """An empty file means plain HTTP, no auth and no extra headers."""
    config = load_web_config(write_config(""))
    assert config.tls is None
    assert config.ssl_context() is None
    assert not config.auth_enabled
    assert dict(config.headers) == {}


def test_tls_section_without_files_keeps_plain_http(write_config: Callable[[str], Path]) -> None:
    """Only versions, no files or client auth: TLS stays off, as exporter-toolkit decides."""
    config = load_web_config(write_config("tls_server_config:\n  min_version: TLS13\n"))
    assert config.ssl_context() is None


def test_relative_paths_resolve_against_config_dir(
    write_config: Callable[[str], Path], config_dir: Path, cwd_elsewhere: Path
) -> None:
    """Relative file names resolve against the config file's directory, not the cwd."""
    config = load_web_config(
        write_config(
            TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"
        )
    )
    assert config.tls is not None
    assert config.tls.cert_file == config_dir / "server.crt"
    assert config.tls.key_file == config_dir / "server.key"
    assert config.tls.client_ca_file == config_dir / "ca.crt"
    assert not (cwd_elsewhere / "server.crt").exists()


def test_absolute_paths_are_kept(write_config: Callable[[str], Path], pki: PKI) -> None:
    """Absolute file names are used as given."""
    config = load_web_config(
        write_config(
            f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
        )
    )
    assert config.tls is not None
    assert config.tls.cert_file == pki.server_cert


def test_full_file_maps_to_ssl(
    write_config: Callable[[str], Path], password_hashes: dict[str, str]
) -> None:
    """Every supported field loads and maps onto the SSLContext as documented."""
    users = "".join(f"  {user}: '{hashed}'\n" for user, hashed in password_hashes.items())
    text = f"""\
tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: VerifyClientCertIfGiven
  client_ca_file: ca.crt
  min_version: TLS13
  max_version: TLS13
  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]
  curve_preferences: [X25519]
  prefer_server_cipher_suites: false
http_server_config:
  http2: false
  headers:
    X-Frame-Options: deny
    Strict-Transport-Security: max-age=31536000
basic_auth_users:
{users}"""
    config = load_web_config(write_config(text))
    context = config.ssl_context()
    assert context is not None
    assert context.verify_mode == ssl.CERT_OPTIONAL
    assert context.minimum_version == context.maximum_version == ssl.TLSVersion.TLSv1_3
    assert not context.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert config.tls is not None
    assert config.tls.ciphers == "ECDHE-RSA-AES128-GCM-SHA256"
    assert config.auth_enabled
    # htpasswd's $2y$ is stored as the equivalent $2b$.
    assert config.users["alice"].startswith(b"$2b$")
    assert dict(config.headers) == {
        "X-Frame-Options": "deny",
        "Strict-Transport-Security": "max-age=31536000",
    }


def test_request_client_cert_maps_to_no_verification(write_config: Callable[[str], Path]) -> None:
    """RequestClientCert loads as CERT_NONE (an unverified certificate admits anyone anyway)."""
    config = load_web_config(write_config(TLS + "  client_auth_type: RequestClientCert\n"))
    context = config.ssl_context()
    assert context is not None
    assert context.verify_mode == ssl.CERT_NONE


def test_ignored_settings_are_logged(
    write_config: Callable[[str], Path],
    password_hashes: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """curve_preferences is accepted and logged as ignored; auth without TLS is warned about."""
    caplog.set_level(logging.WARNING, logger="exporter.http.webconfig")
    load_web_config(write_config(TLS + "  curve_preferences: [X25519, CurveP256]\n"))
    load_web_config(write_config(f"basic_auth_users:\n  bob: '{password_hashes['bob']}'\n"))
    messages = log_text(caplog.records).splitlines()
    assert any("field=curve_preferences" in message for message in messages)
    assert any("basic auth without TLS" in message for message in messages)
    assert not any(password_hashes["bob"] in message for message in messages)
