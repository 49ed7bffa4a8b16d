"""The pollers' loop: a failure never stops it, each change of state logs once, Retry-After."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import pytest

from exporter.adobe.client import AdobeApi, AdobeServerError, AdobeThrottled, RequestResult
from exporter.adobe.polling import PollState, run_every
from exporter.logs import fields


def server_error() -> AdobeServerError:
    """A 503 from Flow Service."""
    return AdobeServerError(
        "flow_service GET /flows: HTTP 503",
        api=AdobeApi.FLOW_SERVICE,
        result=RequestResult.SERVER_ERROR,
        status=503,
    )


async def test_state_changes_are_logged_once_not_per_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Three failures in a row log once; a recovery, a new failure and a crash log once each."""
    caplog.set_level(logging.DEBUG, logger="exporter.adobe.polling")
    outcomes: list[Exception | None] = [
        server_error(),
        server_error(),
        server_error(),
        None,
        server_error(),
        KeyError("x"),
    ]
    done = asyncio.Event()

    async def cycle() -> None:
        if not outcomes:
            done.set()
            return
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    task = asyncio.create_task(run_every(0.001, cycle, PollState("flow refresh")))
    await asyncio.wait_for(done.wait(), 5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    lines = [(r.levelname, r.getMessage(), fields(r)) for r in caplog.records if r.levelno >= 20]
    named = {"task": "flow refresh"}
    failing = {**named, "error_type": "AdobeServerError"}
    failing["error"] = "flow_service GET /flows: HTTP 503"
    assert lines == [
        ("WARNING", "adobe task failing", failing),
        ("INFO", "adobe task ok again", named),
        ("WARNING", "adobe task failing", failing),
        ("ERROR", "adobe task failing", {**named, "error_type": "KeyError", "error": "'x'"}),
        ("INFO", "adobe task ok again", named),
    ]


async def test_retry_after_lengthens_the_wait_after_a_failure() -> None:
    """A 429 with Retry-After waits at least that long before the next attempt."""
    starts: list[float] = []
    second = asyncio.Event()

    async def cycle() -> None:
        starts.append(time.monotonic())
        if len(starts) == 2:
            second.set()
        raise AdobeThrottled(
            "throttled", api=AdobeApi.IMS, result=RequestResult.THROTTLED, retry_after=0.3
        )

    task = asyncio.create_task(run_every(0.001, cycle, PollState("t")))
    await asyncio.wait_for(second.wait(), 5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert starts[1] - starts[0] >= 0.29
