"""Which replica leads: the one whose lock is held runs the Adobe pollers (protocol notes §18.15).

A poller asks `leadership.is_leader` before each cycle, or waits with `wait_until_leader()`.
With PostgreSQL the lock is a session-level advisory lock on a connection of its own: when the
leader dies its session ends, and another replica takes the lock at its next try (every
`interval` seconds, well inside one poll cycle). With SQLite the one process always leads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)


class LeaderLock(Protocol):
    """A lock at most one replica holds; its methods block (they run in a thread)."""

    def try_acquire(self) -> bool:
        """Keep or take the lock; False when another replica holds it or on any error."""

    def release(self) -> None:
        """Give the lock up (idempotent)."""


class SoleLeader:
    """The lock of a single process: always held."""

    def try_acquire(self) -> bool:
        """Always held."""
        return True

    def release(self) -> None:
        """Nothing to release."""


class Leadership:
    """This replica's leadership, renewed every `interval` seconds by `run()`."""

    def __init__(
        self,
        lock: LeaderLock,
        interval: float,
        *,
        on_change: Callable[[bool], None] = lambda leader: None,
    ) -> None:
        self._lock = lock
        self.interval = interval
        self._on_change = on_change
        self._leading = asyncio.Event()
        self._standing_by = asyncio.Event()
        self._standing_by.set()

    @property
    def is_leader(self) -> bool:
        """Whether this replica leads now."""
        return self._leading.is_set()

    async def wait_until_leader(self) -> None:
        """Return once this replica leads (at once if it does)."""
        await self._leading.wait()

    async def wait_until_lost(self) -> None:
        """Return once this replica no longer leads (at once if it does not)."""
        await self._standing_by.wait()

    async def renew(self) -> bool:
        """Try the lock once and record the answer; whether this replica leads."""
        leader = await asyncio.to_thread(self._lock.try_acquire)
        if leader != self.is_leader:
            log.info("leadership acquired" if leader else "leadership lost")
            if leader:
                self._leading.set()
                self._standing_by.clear()
            else:
                self._leading.clear()
                self._standing_by.set()
            self._on_change(leader)
        return leader

    async def run(self) -> None:
        """Forever: renew the lock every interval (a cancelled run releases it)."""
        try:
            while True:
                await self.renew()
                await asyncio.sleep(self.interval)
        finally:
            await asyncio.to_thread(self._lock.release)
            if self.is_leader:
                self._leading.clear()
                self._standing_by.set()
                self._on_change(False)
