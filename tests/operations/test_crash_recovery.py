"""SIGKILL at random moments under load: no acknowledged notification lost, none counted twice."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import aiohttp

from tests.payload_builders import body, legacy, run_object
from tests.support import ExporterProcess

FLOWS = 8
NOTIFICATIONS = 1500
CONCURRENCY = 16


def make_deliveries(rng: random.Random) -> list[tuple[int, str, bytes]]:
    """(notification number, flow id, body): every notification once, 10% again, shuffled."""
    deliveries = []
    for number in range(NOTIFICATIONS):
        flow_id = f"flow-{number % FLOWS}"
        run = run_object(run_id=f"run-{number}", flow_id=flow_id, input_records=1)
        deliveries.append((number, flow_id, body(legacy(f"evt-{number}", run))))
    deliveries += rng.sample(deliveries, NOTIFICATIONS // 10)
    rng.shuffle(deliveries)
    return deliveries


async def send_all(
    service: ExporterProcess, deliveries: list[tuple[int, str, bytes]], kill_after: int | None
) -> set[int]:
    """Post every delivery with CONCURRENCY clients; SIGKILL the service after `kill_after` 2xx.

    Returns the notification numbers that were answered 2xx.
    """
    acknowledged: set[int] = set()
    queue: asyncio.Queue[tuple[int, str, bytes]] = asyncio.Queue()
    for delivery in deliveries:
        queue.put_nowait(delivery)
    killed = asyncio.Event()
    timeout = aiohttp.ClientTimeout(total=10)

    async def client(session: aiohttp.ClientSession) -> None:
        while not queue.empty() and not killed.is_set():
            number, _, payload = queue.get_nowait()
            try:
                async with session.post(service.url + "/webhook", data=payload) as response:
                    ok = response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                continue
            if ok:
                acknowledged.add(number)
                limit_reached = kill_after is not None and len(acknowledged) >= kill_after
                if limit_reached and not killed.is_set():
                    killed.set()
                    service.kill()

    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(client(session) for _ in range(CONCURRENCY)))
    return acknowledged


def runs_per_flow(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float],
) -> dict[str, float]:
    """aep_flow_runs_total{status="success"} by flow id."""
    counts = {}
    for (name, labels), value in samples.items():
        label = dict(labels)
        if name == "aep_flow_runs_total" and label["status"] == "success":
            counts[label["flow_id"]] = value
    return counts


async def test_kill_restart_and_redelivery_count_every_notification_once(tmp_path: Path) -> None:
    """Every 2xx before a SIGKILL is counted after restart; redelivery counts each exactly once."""
    seed = int(os.environ.get("AEP_TEST_SEED", random.randrange(1 << 32)))
    print(f"seed={seed}")
    rng = random.Random(seed)
    deliveries = make_deliveries(rng)
    expected = {f"flow-{i}": 0 for i in range(FLOWS)}
    for number in range(NOTIFICATIONS):
        expected[f"flow-{number % FLOWS}"] += 1
    flow_of = {number: flow_id for number, flow_id, _ in deliveries}
    state = tmp_path / "state.db"

    acknowledged: set[int] = set()
    for round_number in range(2):
        kill_after = rng.randrange(100, NOTIFICATIONS // 2)
        print(f"round={round_number} kill_after={kill_after}")
        with ExporterProcess(state, "--insecure-accept-unsigned") as service:
            acknowledged |= await send_all(service, deliveries, kill_after)
        with ExporterProcess(state, "--insecure-accept-unsigned") as service:
            counted = runs_per_flow(service.metrics())
            for flow_id, distinct in expected.items():
                acked = sum(1 for n in acknowledged if flow_of[n] == flow_id)
                assert counted.get(flow_id, 0) >= acked, (flow_id, acked, counted)
                assert counted.get(flow_id, 0) <= distinct
            service.terminate()

    # Adobe retries everything that was not acknowledged (and some that were): resend it all.
    with ExporterProcess(state, "--insecure-accept-unsigned") as service:
        await send_all(service, deliveries, kill_after=None)
        samples = service.metrics()
        assert runs_per_flow(samples) == expected
        total_records = sum(
            value for (name, _), value in samples.items() if name == "aep_flow_input_records_total"
        )
        assert total_records == NOTIFICATIONS
        assert service.terminate() == 0
