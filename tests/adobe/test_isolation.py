"""Adobe failures never touch ingest; secrets never reach a log line; check-adobe exit codes."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from exporter.adobe import fake_documents as documents
from exporter.adobe.fake import SERVER_ERROR, UNAUTHORIZED, FakeAdobe
from exporter.adobe.fake_thread import FakeAdobeThread
from exporter.cli import main
from tests.adobe.conftest import adobe_settings, until
from tests.adobe.test_client import closed_port
from tests.conftest import MakeClient
from tests.payload_builders import body, run_object
from tests.support import ExporterProcess, wait_for


async def test_ims_down_leaves_webhook_metrics_and_readiness_alone(
    make_client: MakeClient, fake: FakeAdobe
) -> None:
    """With IMS unreachable the webhook still answers 200 and counts, and /readyz is 200."""
    ims = f"http://127.0.0.1:{closed_port()}/ims/token/v3"
    registration = fake.add_registration(documents.registration())
    client, registry, _ = await make_client(
        **adobe_settings(fake, ims_url=ims, registration_url=registration)
    )
    failed = {"api": "ims", "result": "network_error"}
    await until(
        lambda: registry.get_sample_value("aep_exporter_adobe_requests_total", failed),
        "a failed token request",
    )
    response = await client.post("/webhook", data=body(run_object(run_id="r1", flow_id="f1")))
    assert response.status == 200
    assert (await client.get("/readyz")).status == 200
    assert (await client.get("/metrics")).status == 200
    recorded = {"source": "webhook", "kind": "run", "outcome": "recorded"}
    assert registry.get_sample_value("aep_exporter_notifications_total", recorded) == 1.0
    assert registry.get_sample_value("aep_exporter_adobe_token_expiry_timestamp_seconds") is None
    # Nothing was asked of the other APIs without a token.
    assert fake.requests == []


async def test_without_adobe_settings_nothing_adobe_exists(make_client: MakeClient) -> None:
    """No IMS credentials: no client, no poller, no Adobe self-metric, no aep_flow_enabled."""
    client, _, exporter = await make_client()
    assert exporter.adobe is None
    text = await (await client.get("/metrics")).text()
    for name in ("aep_exporter_adobe_", "aep_exporter_poll_", "aep_events_", "aep_flow_enabled"):
        assert name not in text


@pytest.fixture
def fake_thread() -> Iterator[FakeAdobeThread]:
    """The fake on its own thread, serving prod flows and a registration."""
    fake = FakeAdobe()
    fake.flows["prod"] = [documents.flow("f1", name="CRM accounts")]
    fake.connection_specs[documents.S3_SPEC_ID] = documents.connection_spec()
    with FakeAdobeThread(fake) as running:
        yield running


def env_settings(fake: FakeAdobe, secret_file: Path, **extra: str) -> dict[str, str]:
    """The fake's credentials as AEP_EXPORTER_* variables (the secret from a file)."""
    secret_file.write_text(fake.client_secret + "\n")
    return {
        "AEP_EXPORTER_IMS_URL": fake.ims_url,
        "AEP_EXPORTER_IMS_CLIENT_ID": fake.client_id,
        "AEP_EXPORTER_IMS_CLIENT_SECRET_FILE": str(secret_file),
        "AEP_EXPORTER_IMS_SCOPES": ",".join(sorted(fake.scopes)),
        "AEP_EXPORTER_IMS_ORG_ID": fake.org_id,
        "AEP_EXPORTER_PLATFORM_URL": fake.base_url,
        "AEP_EXPORTER_SANDBOXES": "prod",
        "AEP_EXPORTER_RECONCILE_INTERVAL": "0",
        **extra,
    }


def test_no_secret_or_token_in_any_log_line(fake_thread: FakeAdobeThread, tmp_path: Path) -> None:
    """A real process through failures and recoveries, at DEBUG, logs neither secret nor token."""
    fake = fake_thread.fake
    url = fake.add_registration(documents.registration(webhook_status="wobbly"))
    fake.script("ims", SERVER_ERROR)
    fake.script("flows", UNAUTHORIZED, SERVER_ERROR)
    settings = env_settings(
        fake,
        tmp_path / "secret",
        AEP_EXPORTER_REGISTRATION_URL=url,
        AEP_EXPORTER_FLOW_REFRESH_INTERVAL="1s",
        AEP_EXPORTER_REGISTRATION_POLL_INTERVAL="1s",
    )
    process = ExporterProcess(tmp_path / "state.db", "--log-level", "DEBUG", settings=settings)
    with process:
        done = "aep_exporter_poll_last_success_timestamp_seconds"
        wait_for(lambda: (done, (("task", "flows"),)) in process.metrics(), "a flow refresh", 20.0)
        assert (done, (("task", "registration"),)) in process.metrics()
    log = process.log_path.read_text()
    assert 'msg="adobe task failing" task="flow refresh"' in log
    assert 'msg="adobe task ok again" task="flow refresh"' in log
    assert "wobbly" in log
    assert fake.client_secret not in log
    assert fake.tokens_issued >= 1
    assert "fake-ims-" not in log  # every token the fake issues starts so


@pytest.fixture
def check_adobe(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str]]:
    """Run the CLI's `check-adobe` with flags only (no AEP_EXPORTER_* variables); (status,
    output)."""
    for name in [n for n in os.environ if n.startswith("AEP_EXPORTER_")]:
        monkeypatch.delenv(name)

    def run(*flags: str) -> tuple[int, str]:
        status = main(["check-adobe", *flags])
        captured = capsys.readouterr()
        return status, captured.out + captured.err

    return run


def credential_flags(fake: FakeAdobe, secret_file: Path) -> list[str]:
    """The fake's credentials as flags, the secret from a file."""
    secret_file.write_text(fake.client_secret)
    return [
        "--ims-url", fake.ims_url, "--ims-client-id", fake.client_id,
        "--ims-client-secret-file", str(secret_file),
        "--ims-scopes", ",".join(sorted(fake.scopes)), "--ims-org-id", fake.org_id,
        "--platform-url", fake.base_url, "--sandbox", "prod",
    ]  # fmt: skip


def test_check_adobe_answers_per_api_and_exits_0_1_or_2(
    fake_thread: FakeAdobeThread, tmp_path: Path, check_adobe: Callable[..., tuple[int, str]]
) -> None:
    """0 when every API answers, 1 when one fails, 2 for bad settings; one line per API."""
    fake = fake_thread.fake
    url = fake.add_registration(documents.registration())
    flags = credential_flags(fake, tmp_path / "secret")
    status, output = check_adobe(*flags, "--registration-url", url)
    assert status == 0, output
    lines = output.splitlines()
    assert lines[0].startswith("ims: ok token expires in 23h59m")
    assert lines[1] == "flow_service: ok sandbox=prod first source flow: f1"
    assert lines[2].startswith("registration: ok registration_id=d1c2b3a4-")
    assert "webhook_status=verified" in lines[2]
    assert "healthy=yes" in lines[2]
    flow_page = fake.requests_to("flows")[-1]
    assert flow_page.query["limit"] == "1"

    missing = url.replace("/registrations/", "/registrations/0")
    status, output = check_adobe(*flags, "--registration-url", missing)
    assert status == 1, output
    assert "registration: FAILED" in output
    assert "HTTP 404" in output

    (tmp_path / "wrong").write_text("not-the-secret")
    wrong = [*flags[:4], "--ims-client-secret-file", str(tmp_path / "wrong"), *flags[6:]]
    status, output = check_adobe(*wrong)
    assert status == 1, output
    assert output.startswith("ims: FAILED IMS refused the token request: HTTP 401")
    assert fake.client_secret not in output
    assert "not-the-secret" not in output

    status, output = check_adobe("--ims-client-id", "abc")
    assert status == 2, output
    assert "half of the IMS settings" in output
    status, output = check_adobe()
    assert status == 2, output
    assert "no Adobe credentials configured" in output
