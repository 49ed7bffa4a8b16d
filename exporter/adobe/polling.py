"""What every Adobe poller shares: its cadence, and one log line per change of its state."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from exporter.adobe.client import AdobeError
from exporter.stores.protocol import StoreUnavailable

log = logging.getLogger(__name__)

# Retry-After is believed up to an hour (as the token provider does, protocol notes §13).
MAX_RETRY_AFTER_SECONDS = 3600.0


class PollState:
    """A task's health, logged once per change (ok → failing → ok), never once per attempt."""

    def __init__(self, task: str) -> None:
        self.task = task
        self.failing: str | None = None  # what the current failure is, None while ok

    def succeeded(self) -> None:
        """The task worked; logs the recovery if it was failing."""
        if self.failing is not None:
            log.info("adobe task ok again", extra={"task": self.task})
            self.failing = None

    def failed(self, exc: Exception) -> None:
        """The task failed; logs it if it was ok or failed differently before."""
        if isinstance(exc, AdobeError):
            state, level = f"{exc.api}:{exc.result}:{exc.status}", logging.WARNING
        elif isinstance(exc, StoreUnavailable):
            state, level = "store", logging.WARNING
        else:
            state, level = f"unexpected:{type(exc).__name__}", logging.ERROR
        if state == self.failing:
            log.debug("adobe task still failing", extra={"task": self.task, "error": str(exc)})
            return
        self.failing = state
        # AdobeError messages carry no secret, token or query (exporter.adobe.client); for the
        # unexpected, the type and message only, no traceback with local values.
        failure = {"task": self.task, "error_type": type(exc).__name__, "error": str(exc)}
        log.log(level, "adobe task failing", extra=failure)


async def run_every(
    interval: float,
    cycle: Callable[[], Awaitable[None]],
    state: PollState,
    *,
    failure_interval: float | None = None,
) -> None:
    """Forever: run `cycle`, then wait `interval` (`failure_interval` after a failure, longer
    if Adobe's Retry-After asks). A failure never stops the loop."""
    while True:
        delay = interval
        try:
            await cycle()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a poller never stops; the state logs it
            state.failed(exc)
            delay = failure_interval if failure_interval is not None else interval
            retry_after = exc.retry_after if isinstance(exc, AdobeError) else None
            if retry_after is not None:
                delay = max(delay, min(retry_after, MAX_RETRY_AFTER_SECONDS))
        else:
            state.succeeded()
        await asyncio.sleep(delay)
