"""A store that cannot write: 503 and not ready, one log line, then recovery by itself."""

from __future__ import annotations

import asyncio
import resource
import signal
import time
from pathlib import Path

import aiohttp

from tests.payload_builders import body, legacy, run_object
from tests.support import ExporterProcess

FILE_SIZE_LIMIT = 512 * 1024
# Longer than several readiness probes (one every 2 s): a flapping probe shows within it.
WATCH_SECONDS = 9.0


def limit_file_size() -> None:
    """In the child: files may not grow past the limit (EFBIG instead of SIGXFSZ)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, hard))


def padding(number: int) -> bytes:
    """An unknown document of 16 KiB: stored whole as a dead letter, so it fills the files."""
    return body({"padding": "x" * 16384, "eventid": f"pad-{number}"})


async def test_full_disk_keeps_readiness_down_until_commits_succeed(tmp_path: Path) -> None:
    """Past a file-size limit: 503 and /readyz 503 for as long as real commits would fail (no
    flapping, even while deliveries keep coming); lifting the limit restores readiness."""
    state = tmp_path / "state.db"
    with ExporterProcess(state, "--insecure-accept-unsigned", preexec=limit_file_size) as service:
        statuses = []
        async with aiohttp.ClientSession() as session:
            for number in range(400):
                async with session.post(service.url + "/webhook", data=padding(number)) as response:
                    statuses.append(response.status)
                    if response.status == 503:
                        assert "Retry-After" in response.headers
                        break
            assert statuses[-1] == 503, "the file-size limit was never reached"
            samples = service.metrics()
            assert samples[("aep_exporter_store_ready", ())] == 0
            reason = (("reason", "store_unavailable"),)
            assert samples[("aep_exporter_requests_rejected_total", reason)] >= 1

            # Adobe keeps retrying; readiness must not come back while its commits would fail.
            ready_seen, retried = 0, 1000
            deadline = time.monotonic() + WATCH_SECONDS
            while time.monotonic() < deadline:
                async with session.get(service.url + "/readyz") as response:
                    ready_seen += response.status == 200
                retried += 1
                async with session.post(service.url + "/webhook", data=padding(retried)) as retry:
                    assert retry.status == 503
                await asyncio.sleep(0.2)
            assert ready_seen == 0, f"/readyz answered 200 {ready_seen} times while full"

            assert service.process is not None
            _, hard = resource.prlimit(service.process.pid, resource.RLIMIT_FSIZE)
            resource.prlimit(service.process.pid, resource.RLIMIT_FSIZE, (hard, hard))
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                async with session.get(service.url + "/readyz") as response:
                    if response.status == 200:
                        break
                await asyncio.sleep(0.2)
            else:
                raise AssertionError("readiness did not come back")
            async with session.post(service.url + "/webhook", data=padding(retried)) as response:
                assert response.status == 200
            run = body(legacy("after", run_object(run_id="after")))
            async with session.post(service.url + "/webhook", data=run) as response:
                assert response.status == 200
        samples = service.metrics()
        assert samples[("aep_exporter_store_ready", ())] == 1
        flow = (("flow_id", "flow-a"), ("sandbox", "prod"), ("status", "success"))
        assert samples[("aep_flow_runs_total", flow)] == 1
        assert service.terminate() == 0
    log = service.log_path.read_text()
    assert log.count('msg="state store unavailable; answering 503') == 1, log
    assert log.count("writable again") == 1, log
