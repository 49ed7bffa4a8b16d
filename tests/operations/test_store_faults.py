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


def limit_file_size() -> None:
    """In the child: files may not grow past the limit (EFBIG instead of SIGXFSZ)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, hard))


async def test_full_disk_answers_503_then_recovers(tmp_path: Path) -> None:
    """Writes past a file-size limit fail: 503 store_unavailable, /readyz 503; lifting it heals."""
    state = tmp_path / "state.db"
    with ExporterProcess(state, "--insecure-accept-unsigned", preexec=limit_file_size) as service:
        statuses = []
        async with aiohttp.ClientSession() as session:
            for number in range(400):
                # Unknown documents of 16 KiB each fill the dead letters, and so the files.
                payload = body({"padding": "x" * 16384, "eventid": f"pad-{number}"})
                async with session.post(service.url + "/webhook", data=payload) as response:
                    statuses.append(response.status)
                    if response.status == 503:
                        assert "Retry-After" in response.headers
                        break
            assert statuses[-1] == 503, "the file-size limit was never reached"
            async with session.get(service.url + "/readyz") as response:
                assert response.status == 503
            samples = service.metrics()
            assert samples[("aep_exporter_store_ready", ())] == 0
            reason = (("reason", "store_unavailable"),)
            assert samples[("aep_exporter_requests_rejected_total", reason)] >= 1

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
            run = body(legacy("after", run_object(run_id="after")))
            async with session.post(service.url + "/webhook", data=run) as response:
                assert response.status == 200
        samples = service.metrics()
        assert samples[("aep_exporter_store_ready", ())] == 1
        flow = (("flow_id", "flow-a"), ("sandbox", "prod"), ("status", "success"))
        assert samples[("aep_flow_runs_total", flow)] == 1
        assert service.terminate() == 0
    log = service.log_path.read_text()
    assert log.count("state store unavailable") == 1, log
    assert "writable again" in log
