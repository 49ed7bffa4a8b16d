"""SIGTERM under load: in-flight deliveries finish, acknowledged ones are kept, exit status 0."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from tests.operations.test_crash_recovery import make_deliveries, runs_per_flow, send_all
from tests.support import ExporterProcess


async def test_sigterm_under_load_loses_nothing(tmp_path: Path) -> None:
    """Deliveries answered 2xx before SIGTERM are all counted after the restart."""
    deliveries = make_deliveries(random.Random(7))
    state = tmp_path / "state.db"
    with ExporterProcess(state, "--insecure-accept-unsigned", "--shutdown-grace", "5s") as service:
        sending = asyncio.create_task(send_all(service, deliveries, kill_after=None))
        await asyncio.sleep(0.5)
        assert service.process is not None
        status = await asyncio.to_thread(service.terminate)
        acknowledged = await sending
        assert status == 0
        log = service.log_path.read_text()
        assert "stopped" in log
    assert acknowledged, "no delivery was acknowledged before SIGTERM"
    flow_of = {number: flow_id for number, flow_id, _ in deliveries}
    with ExporterProcess(state, "--insecure-accept-unsigned") as service:
        counted = runs_per_flow(service.metrics())
    for flow_id in set(flow_of.values()):
        acked = sum(1 for n in acknowledged if flow_of[n] == flow_id)
        assert counted.get(flow_id, 0) >= acked
