"""Exclusive time per pipeline stage, from accumulators wrapped around the real stage functions.

Installed only by the stages benchmark, in its own process: production code carries no timer.
Each stage is a list of functions (plain, coroutine or generator); a call's time is charged to
the innermost stage running, so nested stages never count twice, and a coroutine is charged only
for its steps, never for the time it is suspended. The clock is `thread_time_ns` (CPU time: a
wall clock would also count waits for the GIL and preemption); it costs about 1 µs a read here,
so what each read adds to the stage it enters and to the stage it leaves from is measured
(`calibrate`) and taken off again.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Generator, Iterator
from typing import Any

# Stage → the functions whose exclusive time is that stage's ("module:attribute.path"). A
# function is patched where its callers look it up, so a name imported by value is patched in
# the importing module.
STAGES: dict[str, tuple[str, ...]] = {
    "read (BodyReader)": ("exporter.sources.body:BodyReader.read",),
    "verify (RSA signature)": ("exporter.verify.signatures:DeliveryVerifier.verify",),
    "recipients (raw pre-scan)": ("exporter.ingest:read_recipients",),
    "decode (depth check, JSON)": ("exporter.normalize.documents:decode_body",),
    "classify (split, shapes)": (
        "exporter.normalize.documents:_split",
        "exporter.normalize.documents:_classify",
        "exporter.normalize.documents:_classify_message",
    ),
    "normalize (run, alert values)": (
        "exporter.normalize.documents:run_document",
        "exporter.normalize.documents:alert_document",
    ),
    "identity (canonical JSON, keys)": ("exporter.normalize.documents:_document",),
    "de-duplicate (claim keys)": (
        "exporter.stores.sqlite:SQLiteStore.claim_keys",
        "exporter.stores.sqlite:SQLiteStore.any_key_seen",
    ),
    "commit (apply, put flows, COMMIT)": ("exporter.recorder:Recorder._commit",),
    "account (self-metrics)": ("exporter.ingest:Pipeline._count",),
    "handler and pipeline glue": ("exporter.sources.webhook:WebhookSource.handle",),
}


class _Thread:
    """One thread's stage stack, the time charged to each stage, and the entries counted."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.last = 0
        self.totals: defaultdict[str, int] = defaultdict(int)
        # Times a stage was entered, and times another was entered while it ran (its children).
        self.entered: defaultdict[str, int] = defaultdict(int)
        self.children: defaultdict[str, int] = defaultdict(int)

    def enter(self, stage: str) -> None:
        now = time.thread_time_ns()
        if self.stack:
            self.totals[self.stack[-1]] += now - self.last
            self.children[self.stack[-1]] += 1
        self.stack.append(stage)
        self.entered[stage] += 1
        self.last = now

    def leave(self) -> None:
        now = time.thread_time_ns()
        self.totals[self.stack.pop()] += now - self.last
        self.last = now


class _Clock(threading.local):
    """Each thread's own `_Thread`, also listed in `_ALL` so that totals can sum them."""

    def __init__(self) -> None:
        self.thread = _Thread()
        _ALL.append(self.thread)

    def enter(self, stage: str) -> None:
        self.thread.enter(stage)

    def leave(self) -> None:
        self.thread.leave()


_ALL: list[_Thread] = []
_CLOCK = _Clock()
_OUTER, _INNER = "calibration outer", "calibration inner"
_CALIBRATION_CALLS = 20_000


def _summed(field: str) -> defaultdict[str, int]:
    summed: defaultdict[str, int] = defaultdict(int)
    for clock in list(_ALL):
        for stage, value in getattr(clock, field).items():
            summed[stage] += value
    return summed


def calibrate() -> tuple[float, float]:
    """Nanoseconds the timer adds to a stage per entry of it, and per entry of a child in it."""
    reset()

    def inner() -> None:
        pass

    timed_inner = _timed(inner, _INNER)

    def outer() -> None:
        for _ in range(_CALIBRATION_CALLS):
            timed_inner()

    _timed(outer, _OUTER)()
    charged = _summed("totals")
    reset()
    return charged[_INNER] / _CALIBRATION_CALLS, charged[_OUTER] / _CALIBRATION_CALLS


def totals(per_entry: float, per_child: float) -> dict[str, dict[str, float]]:
    """Per stage, all threads: nanoseconds charged less the timer's own, and entries."""
    charged, entered, children = _summed("totals"), _summed("entered"), _summed("children")
    return {
        stage: {
            "ns": charged[stage] - entered[stage] * per_entry - children[stage] * per_child,
            "entries": entered[stage],
        }
        for stage in STAGES
    }


def reset() -> None:
    """Forget every charge so far."""
    for clock in list(_ALL):
        clock.totals.clear()
        clock.entered.clear()
        clock.children.clear()


class _Steps:
    """Awaits a coroutine, charging each of its steps (not its suspensions) to a stage."""

    def __init__(self, coro: Any, stage: str) -> None:
        self._coro = coro
        self._stage = stage

    def __await__(self) -> Generator[Any, Any, Any]:
        send: Any = None
        error: BaseException | None = None
        while True:
            _CLOCK.enter(self._stage)
            try:
                yielded = self._coro.throw(error) if error else self._coro.send(send)
            except StopIteration as stop:
                return stop.value
            finally:
                _CLOCK.leave()
            try:
                send, error = (yield yielded), None
            except BaseException as exc:  # handed to the coroutine, as await does
                send, error = None, exc


def _timed(func: Callable[..., Any], stage: str) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def coroutine(*args: Any, **kwargs: Any) -> Any:
            return await _Steps(func(*args, **kwargs), stage)

        return coroutine
    if inspect.isgeneratorfunction(func):

        @functools.wraps(func)
        def generator(*args: Any, **kwargs: Any) -> Iterator[Any]:
            items = func(*args, **kwargs)
            while True:
                _CLOCK.enter(stage)
                try:
                    item = next(items)
                except StopIteration:
                    return
                finally:
                    _CLOCK.leave()
                yield item

        return generator

    @functools.wraps(func)
    def plain(*args: Any, **kwargs: Any) -> Any:
        _CLOCK.enter(stage)
        try:
            return func(*args, **kwargs)
        finally:
            _CLOCK.leave()

    return plain


def install() -> None:
    """Wrap every stage function; a target that no longer exists is an error, never a gap."""
    for stage, targets in STAGES.items():
        for target in targets:
            module_name, path = target.split(":")
            *owners, name = path.split(".")
            owner: Any = importlib.import_module(module_name)
            for part in owners:
                owner = getattr(owner, part)
            func = inspect.getattr_static(owner, name)
            setattr(owner, name, _timed(func, stage))
