"""Leadership: one replica leads at a time, another takes over when it goes; SQLite always leads."""

from __future__ import annotations

import asyncio

from exporter.leadership import Leadership, SoleLeader
from exporter.stores.postgres_schema import AdvisoryLeaderLock
from tests.postgres import PostgresCluster

INTERVAL = 0.1


async def test_a_single_process_always_leads() -> None:
    """With SQLite the one process leads from the first renewal on."""
    changes: list[bool] = []
    leadership = Leadership(SoleLeader(), INTERVAL, on_change=changes.append)
    assert not leadership.is_leader
    assert await leadership.renew()
    await asyncio.wait_for(leadership.wait_until_leader(), 1)
    assert changes == [True]


async def test_one_replica_leads_and_another_takes_over(postgres: PostgresCluster) -> None:
    """Of two replicas one leads; when its run stops (it dies), the other leads within a cycle."""
    url = postgres.create_database()
    first = Leadership(AdvisoryLeaderLock(url), INTERVAL)
    second = Leadership(AdvisoryLeaderLock(url), INTERVAL)
    first_run = asyncio.create_task(first.run())
    await asyncio.wait_for(first.wait_until_leader(), 10)
    second_run = asyncio.create_task(second.run())
    await asyncio.sleep(INTERVAL * 3)
    assert not second.is_leader
    first_run.cancel()
    await asyncio.gather(first_run, return_exceptions=True)
    assert not first.is_leader
    await asyncio.wait_for(second.wait_until_leader(), 10)
    second_run.cancel()
    await asyncio.gather(second_run, return_exceptions=True)


async def test_a_leader_whose_session_is_killed_steps_down(postgres: PostgresCluster) -> None:
    """A terminated lock session ends leadership at the next renewal (then it may lead again)."""
    url = postgres.create_database()
    seen: list[bool] = []
    lock = AdvisoryLeaderLock(url)
    leadership = Leadership(lock, INTERVAL, on_change=seen.append)
    assert await leadership.renew()
    postgres.execute("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'")
    assert not await leadership.renew()
    assert await leadership.renew()
    assert seen == [True, False, True]
    lock.release()
