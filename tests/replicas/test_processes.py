"""Real replicas on one real PostgreSQL: one truth, one leader, no loss when anything dies."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import aiohttp
import pytest

from tests.payload_builders import body, legacy, run_object
from tests.postgres import PostgresCluster
from tests.support import ExporterProcess, wait_for

FLOWS = 4
Delivery = tuple[int, str, bytes]


def deliveries(count: int, rng: random.Random) -> list[Delivery]:
    """(number, flow id, body) for `count` notifications over FLOWS flows, shuffled."""
    made = []
    for number in range(count):
        flow_id = f"flow-{number % FLOWS}"
        run = run_object(run_id=f"run-{number}", flow_id=flow_id, input_records=1)
        made.append((number, flow_id, body(legacy(f"evt-{number}", run))))
    rng.shuffle(made)
    return made


@contextlib.contextmanager
def replicas(tmp_path: Path, url: str, count: int) -> Iterator[list[ExporterProcess]]:
    """`count` exporters on one database, each with its own (unused) state path and port."""
    started = [
        ExporterProcess(
            tmp_path / f"replica-{index}.db",
            "--insecure-accept-unsigned",
            settings={"AEP_EXPORTER_STATE_URL": url},
            name=f"replica-{index}",
        )
        for index in range(count)
    ]
    try:
        started[0].start()  # migrates the schema; the others start together
        for process in started[1:]:
            process.spawn()
        for process in started[1:]:
            wait_for(lambda p=process: _ready(p), f"{process.name} ready", 60.0)  # type: ignore[misc]
        yield started
    finally:
        for process in started:
            process.stop()


async def send(
    targets: Sequence[ExporterProcess],
    work: Sequence[Delivery],
    *,
    concurrency: int = 8,
    kill: tuple[ExporterProcess, int] | None = None,
) -> set[int]:
    """Post each delivery to targets[i % len] (retrying on the others, as Adobe would retry);
    SIGKILL `kill[0]` after `kill[1]` acknowledgements. The numbers answered 200."""
    acknowledged: set[int] = set()
    queue: asyncio.Queue[tuple[int, Delivery]] = asyncio.Queue()
    for index, delivery in enumerate(work):
        queue.put_nowait((index, delivery))

    async def client(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            index, (number, _, payload) = queue.get_nowait()
            for attempt in range(len(targets) * 3):
                target = targets[(index + attempt) % len(targets)]
                try:
                    async with session.post(target.url + "/webhook", data=payload) as response:
                        if response.status == 200:
                            acknowledged.add(number)
                            break
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.05)
            victim = kill[0].process if kill is not None else None
            if kill and len(acknowledged) >= kill[1] and victim and victim.poll() is None:
                kill[0].kill()

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    return acknowledged


def flow_section(process: ExporterProcess) -> bytes:
    """The per-flow lines of /metrics (families aep_flow_*), as served."""
    with urllib.request.urlopen(process.url + "/metrics", timeout=10) as response:
        lines = response.read().splitlines(keepends=True)
    return b"".join(line for line in lines if b"aep_flow_" in line)


def successes(process: ExporterProcess) -> dict[str, float]:
    """aep_flow_runs_total{status="success"} by flow id."""
    counts = {}
    for (name, labels), value in process.metrics().items():
        label = dict(labels)
        if name == "aep_flow_runs_total" and label.get("status") == "success":
            counts[label["flow_id"]] = value
    return counts


def expected_counts(count: int) -> dict[str, float]:
    """How many successes each flow has once all `count` notifications are recorded."""
    return {f"flow-{i}": float(len(range(i, count, FLOWS))) for i in range(FLOWS)}


def leaders(processes: Sequence[ExporterProcess]) -> list[float]:
    """aep_exporter_leader of each process."""
    return [p.metrics()[("aep_exporter_leader", ())] for p in processes]


async def test_three_replicas_count_once_and_serve_equal_flow_sections(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    """Spread deliveries (redeliveries to another replica) count once; sections agree soon."""
    rng = random.Random(15)
    work = deliveries(120, rng)
    redelivered = rng.sample(work, 30)
    with replicas(tmp_path, postgres.create_database(), 3) as running:
        assert await send(running, work) == {n for n, _, _ in work}
        # A redelivery lands on a different replica than the first delivery did.
        assert await send([*running[1:], running[0]], redelivered) == {n for n, _, _ in redelivered}
        # Within 2 s (one sync interval and a render); the bound is generous for a loaded
        # machine, and `python -m tests.benchmarks ingest-postgres` measures the lag itself.
        wait_for(
            lambda: len({flow_section(p) for p in running}) == 1,
            "equal flow sections on every replica",
            timeout=5.0,
            interval=0.05,
        )
        assert successes(running[2]) == expected_counts(120)
        assert sorted(leaders(running)) == [0.0, 0.0, 1.0]


async def test_concurrent_deliveries_of_one_flow_on_two_replicas_all_count(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    """Two replicas recording the same flow at the same moments lose no increment."""
    work = [
        (n, "flow-0", body(legacy(f"evt-{n}", run_object(run_id=f"run-{n}", flow_id="flow-0"))))
        for n in range(100)
    ]
    with replicas(tmp_path, postgres.create_database(), 2) as running:
        assert len(await send(running, work, concurrency=16)) == 100
        wait_for(lambda: successes(running[0]) == {"flow-0": 100.0}, "100 successes", 5.0)
        wait_for(lambda: successes(running[1]) == {"flow-0": 100.0}, "the same on B", 5.0)


async def test_a_killed_replica_loses_no_acknowledged_notification_and_leadership_moves(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    """SIGKILL of the leader under load: every 200 is counted, and the survivor leads."""
    work = deliveries(200, random.Random(7))
    with replicas(tmp_path, postgres.create_database(), 2) as running:
        leader = running[leaders(running).index(1.0)]
        survivor = running[1 - running.index(leader)]
        acknowledged = await send([leader, survivor], work, kill=(leader, 60))
        assert leader.process is not None
        assert leader.process.poll() is not None
        assert acknowledged == {n for n, _, _ in work}  # the rest were retried on the survivor
        assert successes(survivor) == expected_counts(200)
        wait_for(lambda: leaders([survivor]) == [1.0], "the survivor to lead", timeout=5.0)


async def test_postgres_stopped_and_restarted_under_load(tmp_path: Path) -> None:
    """While PostgreSQL is down deliveries get 503 and /readyz fails; it recovers by itself."""
    cluster = PostgresCluster()
    try:
        cluster.start()
        work = deliveries(100, random.Random(3))
        with replicas(tmp_path, cluster.create_database(), 2) as running:
            first = await send(running, work[:50])
            cluster.stop()
            async with (
                aiohttp.ClientSession() as session,
                session.post(running[0].url + "/webhook", data=work[50][2]) as reply,
            ):
                assert reply.status == 503
            rejected = running[0].metrics()
            key = ("aep_exporter_requests_rejected_total", (("reason", "store_unavailable"),))
            assert rejected[key] >= 1
            wait_for(lambda: not _ready(running[1]), "replica B unready", timeout=10.0)
            cluster.start()
            wait_for(lambda: all(_ready(p) for p in running), "readiness to return", 15.0)
            rest = await send(running, work)
            assert first | rest == {n for n, _, _ in work}
            wait_for(lambda: successes(running[1]) == expected_counts(100), "every count", 5.0)
    finally:
        cluster.remove()


def _ready(process: ExporterProcess) -> bool:
    try:
        with urllib.request.urlopen(process.url + "/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture(autouse=True)
def _bounded() -> Iterator[None]:
    """Each test here stops by itself well within a minute."""
    started = time.monotonic()
    yield
    assert time.monotonic() - started < 60
