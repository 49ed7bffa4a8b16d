"""TLS on a real loopback listener: server certificate, versions, ciphers, client certificates."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from exporter.http.webconfig import load_web_config
from tests.webconfig.conftest import PKI, Serve, client_context, fetch, refused

TLS = """\
tls_server_config:
  cert_file: server.crt
  key_file: server.key
"""
VERIFY = TLS + "  client_ca_file: ca.crt\n  client_auth_type: {mode}\n"


async def test_tls_serves_to_client_trusting_the_ca(
    write_config: Callable[[str], Path], serve: Serve, pki: PKI
) -> None:
    """A client that trusts the CA gets /metrics over TLS."""
    port = await serve(load_web_config(write_config(TLS)))
    reply = await fetch(f"https://127.0.0.1:{port}/metrics", trust=client_context(pki))
    assert reply.status == 200
    assert reply.body != "plain"


async def test_plain_http_to_tls_port_fails(
    write_config: Callable[[str], Path], serve: Serve
) -> None:
    """Plain HTTP to the TLS listener gets no response."""
    port = await serve(load_web_config(write_config(TLS)))
    await refused(f"http://127.0.0.1:{port}/metrics")


async def test_client_without_the_ca_refuses_server(
    write_config: Callable[[str], Path], serve: Serve
) -> None:
    """A client with only the system trust roots rejects the test server certificate."""
    port = await serve(load_web_config(write_config(TLS)))
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await fetch(f"https://127.0.0.1:{port}/metrics", trust=ssl.create_default_context())


async def test_min_version_tls13_refuses_tls12_client(
    write_config: Callable[[str], Path], serve: Serve, pki: PKI
) -> None:
    """min_version TLS13 refuses a client capped at TLS 1.2 and serves a TLS 1.3 one."""
    port = await serve(load_web_config(write_config(TLS + "  min_version: TLS13\n")))
    url = f"https://127.0.0.1:{port}/metrics"
    capped = client_context(pki)
    capped.maximum_version = ssl.TLSVersion.TLSv1_2
    await refused(url, capped)
    assert (await fetch(url, trust=client_context(pki))).status == 200


async def test_cipher_suites_choose_the_tls12_cipher(
    write_config: Callable[[str], Path], serve: Serve, pki: PKI
) -> None:
    """cipher_suites (Go names) restrict TLS 1.2 to the listed OpenSSL cipher."""
    text = TLS + "  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n"
    port = await serve(load_web_config(write_config(text)))
    reply = await fetch(f"https://127.0.0.1:{port}/metrics", trust=client_context(pki))
    assert reply.body == "ECDHE-RSA-AES128-GCM-SHA256"


async def test_require_and_verify_refuses_client_without_cert(
    write_config: Callable[[str], Path], serve: Serve, pki: PKI
) -> None:
    """RequireAndVerifyClientCert refuses a client that presents no certificate."""
    port = await serve(
        load_web_config(write_config(VERIFY.format(mode="RequireAndVerifyClientCert")))
    )
    await refused(f"https://127.0.0.1:{port}/metrics", client_context(pki))


async def test_require_and_verify_accepts_client_signed_by_ca(
    write_config: Callable[[str], Path], serve: Serve, pki: PKI
) -> None:
    """RequireAndVerifyClientCert serves a client whose certificate the client CA signed."""
    port = await serve(
        load_web_config(write_config(VERIFY.format(mode="RequireAndVerifyClientCert")))
    )
    trust = client_context(pki, pki.client_cert, pki.client_key)
    assert (await fetch(f"https://127.0.0.1:{port}/metrics", trust=trust)).status == 200


@pytest.mark.parametrize("mode", ["RequireAndVerifyClientCert", "VerifyClientCertIfGiven"])
async def test_verify_modes_refuse_certificate_of_another_ca(
    write_config: Callable[[str], Path], serve: Serve, pki: PKI, mode: str
) -> None:
    """Both verifying modes refuse a client certificate that another CA signed."""
    port = await serve(load_web_config(write_config(VERIFY.format(mode=mode))))
    trust = client_context(pki, pki.stranger_cert, pki.stranger_key)
    await refused(f"https://127.0.0.1:{port}/metrics", trust)


async def test_verify_if_given_serves_client_without_cert(
    write_config: Callable[[str], Path], serve: Serve, pki: PKI
) -> None:
    """VerifyClientCertIfGiven serves clients without a certificate and with a valid one."""
    port = await serve(load_web_config(write_config(VERIFY.format(mode="VerifyClientCertIfGiven"))))
    url = f"https://127.0.0.1:{port}/metrics"
    assert (await fetch(url, trust=client_context(pki))).status == 200
    with_cert = client_context(pki, pki.client_cert, pki.client_key)
    assert (await fetch(url, trust=with_cert)).status == 200
