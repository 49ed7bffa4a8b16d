"""Split listeners, the web config's basic auth, and catalogue reloads, on a real process."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import aiohttp
import bcrypt

from tests.payload_builders import body, legacy, run_object
from tests.support import ExporterProcess, free_port

AUTH = {"Authorization": aiohttp.encode_basic_auth("prometheus", "scrape-secret")}


def write_web_config(path: Path) -> Path:
    """A web config with one basic-auth user (low bcrypt cost keeps the test fast)."""
    hashed = bcrypt.hashpw(b"scrape-secret", bcrypt.gensalt(4)).decode()
    path.write_text(f"basic_auth_users:\n  prometheus: {hashed}\n")
    return path


def write_catalogue(path: Path, name: str) -> None:
    """A one-flow catalogue."""
    path.write_text(f"flows:\n  - flow_id: flow-a\n    sandbox: prod\n    name: {name}\n")


async def flow_name(session: aiohttp.ClientSession, url: str) -> str:
    """The flow_name label of flow-a's aep_flow_info."""
    async with session.get(url + "/metrics", headers=AUTH) as response:
        text = await response.text()
    line = next(x for x in text.splitlines() if x.startswith("aep_flow_info{"))
    return line.split('flow_name="')[1].split('"')[0]


async def test_split_metrics_listener_with_basic_auth_and_reload(tmp_path: Path) -> None:
    """Metrics live on their own authenticated listener; webhook and probes stay open."""
    catalogue = tmp_path / "catalogue.yaml"
    write_catalogue(catalogue, "First name")
    metrics_port = free_port()
    service = ExporterProcess(
        tmp_path / "state.db",
        "--insecure-accept-unsigned",
        "--metrics-listen-address", f"127.0.0.1:{metrics_port}",
        "--web-config-file", str(write_web_config(tmp_path / "web.yaml")),
        "--catalogue-path", str(catalogue),
    )  # fmt: skip
    metrics_url = f"http://127.0.0.1:{metrics_port}"
    with service:
        async with aiohttp.ClientSession() as session:
            run = body(legacy("e1", run_object(run_id="r1")))
            async with session.post(service.url + "/webhook", data=run) as response:
                assert response.status == 200
            async with session.get(service.url + "/metrics") as response:
                assert response.status == 404
            async with session.get(metrics_url + "/metrics") as response:
                assert response.status == 401
                assert "Basic" in response.headers["WWW-Authenticate"]
            async with session.get(metrics_url + "/healthz") as response:
                assert response.status == 401  # the whole metrics listener is protected
            async with session.get(service.url + "/readyz") as response:
                assert response.status == 200  # probes go to the webhook listener
            assert await flow_name(session, metrics_url) == "First name"

            write_catalogue(catalogue, "Second name")
            async with session.post(metrics_url + "/-/reload", headers=AUTH) as response:
                assert response.status == 200
            assert await flow_name(session, metrics_url) == "Second name"

            write_catalogue(catalogue, "Third name")
            assert service.process is not None
            service.process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while await flow_name(session, metrics_url) != "Third name":
                assert time.monotonic() < deadline, "SIGHUP did not reload the catalogue"
                await asyncio.sleep(0.05)

            catalogue.write_text("flows: [{flow_id: x}]\n")  # invalid: no sandbox
            async with session.post(metrics_url + "/-/reload", headers=AUTH) as response:
                assert response.status == 500
            assert await flow_name(session, metrics_url) == "Third name"
        assert service.terminate() == 0


async def test_shared_listener_guards_metrics_but_not_the_webhook(tmp_path: Path) -> None:
    """With one listener and a web config, /metrics needs auth and the webhook does not."""
    service = ExporterProcess(
        tmp_path / "state.db",
        "--insecure-accept-unsigned",
        "--web-config-file", str(write_web_config(tmp_path / "web.yaml")),
    )  # fmt: skip
    with service:
        async with aiohttp.ClientSession() as session:
            run = body(legacy("e1", run_object(run_id="r1")))
            async with session.post(service.url + "/webhook", data=run) as response:
                assert response.status == 200
            async with session.get(service.url + "/webhook?challenge=abc") as response:
                assert await response.text() == "abc"
            async with session.get(service.url + "/metrics") as response:
                assert response.status == 401
            async with session.get(service.url + "/metrics", headers=AUTH) as response:
                assert response.status == 200
                assert "aep_flow_runs_total" in await response.text()
        assert service.terminate() == 0


def test_bad_web_config_stops_start_with_exit_2(tmp_path: Path) -> None:
    """A web config that does not load stops the exporter with one line and status 2."""
    bad = tmp_path / "web.yaml"
    bad.write_text("basic_auth_users:\n  prometheus: not-a-hash\n")
    service = ExporterProcess(tmp_path / "state.db", "--insecure-accept-unsigned",
                      "--web-config-file", str(bad))  # fmt: skip
    service.spawn()
    try:
        assert service.process is not None
        assert service.process.wait(timeout=20) == 2
    finally:
        service.stop()
    assert "web config" in service.log_path.read_text()


async def test_slow_headers_are_cut_off_by_the_idle_timeout(tmp_path: Path) -> None:
    """A client that never finishes its request headers is disconnected after the idle timeout."""
    service = ExporterProcess(
        tmp_path / "state.db", "--insecure-accept-unsigned", "--idle-timeout", "1s"
    )
    with service:
        reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
        writer.write(b"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        await writer.drain()
        started = time.monotonic()
        async with asyncio.timeout(10):
            assert await reader.read() == b""  # the server closed the connection
        assert time.monotonic() - started < 5
        writer.close()
        async with (
            aiohttp.ClientSession() as session,
            session.get(service.url + "/readyz") as response,
        ):
            assert response.status == 200
        assert service.terminate() == 0
