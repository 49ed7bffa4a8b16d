"""The journal source: the registration's Journaling API, read page by page (protocol notes §9).

Each `events[].event` is one body for the shape classifier. A page's records and the cursor after
it (the absolute `next` URL, the last position and the newest event time) commit in one store
transaction, so a restart resumes exactly after the last recorded page. Only the configured URL
is ever built upon (start and recovery); every other URL is a `rel="next"` link.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from yarl import URL

from exporter.adobe.client import (
    AdobeApi,
    AdobeError,
    AdobeInvalidResponse,
    AdobeStatusError,
    RequestResult,
)
from exporter.adobe.ims import TokenProvider
from exporter.adobe.polling import MAX_RETRY_AFTER_SECONDS, PollState
from exporter.adobe.settings import JOURNAL_RETENTION_SECONDS
from exporter.domain import Source
from exporter.ingest import Delivery, Pipeline
from exporter.normalize.values import FUTURE_SLACK, time_field
from exporter.payloads.canonical import compact_json
from exporter.recorder import Cursor, Recorder

log = logging.getLogger(__name__)

CURSOR_SOURCE = "journal"
# A 204 without Retry-After (the empty-journal example, protocol notes §9.3): 10 s.
DEFAULT_RETRY_AFTER = 10.0
# 429, 5xx, network errors, 401 after a renewal, 404: exponential back-off with jitter.
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 300.0
# After a 410, seek back this far before the newest recorded event (clock skew, late entries).
RESEEK_OVERLAP = 600.0


@dataclass(frozen=True, slots=True)
class JournalCursor:
    """Where the journal is read next, and what the last recorded page ended with."""

    next: str  # absolute URL, as Adobe's `next` link gave it
    position: str | None = None  # the last recorded position (opaque, stored verbatim)
    time: float | None = None  # the newest event time recorded so far (epoch seconds)

    def text(self) -> str:
        """The cursor as the store keeps it (JSON)."""
        return json.dumps({"next": self.next, "position": self.position, "time": self.time})

    @classmethod
    def parse(cls, text: str | None) -> JournalCursor | None:
        """A stored cursor; None when absent or unreadable (the start setting applies)."""
        try:
            value = json.loads(text) if text else None
        except ValueError:
            return None
        if not isinstance(value, dict) or not isinstance(value.get("next"), str):
            return None
        position, when = value.get("position"), value.get("time")
        return cls(
            value["next"],
            position if isinstance(position, str) else None,
            float(when) if isinstance(when, int | float) and math.isfinite(when) else None,
        )


def _page_shape(data: Any) -> str | None:
    # 204 has no body; a 200 is {"events": [...], "_page": {...}} (protocol notes §9.3).
    if data is None or (isinstance(data, dict) and isinstance(data.get("events"), list)):
        return None
    return "no events list"


def event_time(event: Any, now: float) -> float | None:
    """The newest time an event states about itself: a CloudEvent's `time`, else its run's
    `updatedAt`/`createdAt`. Never later than the event entered the journal."""
    if not isinstance(event, dict):
        return None
    values = [event.get("time")]
    for inner in (event.get("event"), event.get("data"), event):
        if isinstance(inner, dict):
            values += [inner.get("updatedAt"), inner.get("createdAt")]
    times = [time_field(value, "", [], now + FUTURE_SLACK) for value in values]
    known = [moment for moment in times if moment is not None]
    return max(known) if known else None


def _seek(seconds: float) -> str:
    """An ISO-8601 duration back from now, as `seek` takes it (`-PT3600S`)."""
    return f"-PT{max(1, math.ceil(seconds))}S"


class JournalPoller:
    """Reads the journal forever: never stops on an error, never loses its cursor."""

    def __init__(
        self,
        tokens: TokenProvider,
        pipeline: Pipeline,
        recorder: Recorder,
        *,
        url: str,
        start: str | float = "oldest",
        on_success: Callable[[], None] = lambda: None,
        on_reset: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
        backoff: tuple[float, float] = (BACKOFF_INITIAL, BACKOFF_MAX),
    ) -> None:
        self._tokens = tokens
        self._pipeline = pipeline
        self._recorder = recorder
        self._url = URL(url)
        self._start = start
        self._on_success = on_success
        self._on_reset = on_reset
        self._clock = clock
        self._jitter = jitter
        self._backoff = backoff
        self.cursor: JournalCursor | None = None
        self.state = PollState("journal")
        # The seek-back URL of the last 410 until an answer of it succeeds: a 410 to it again
        # backs off instead of seeking back at full speed.
        self._recovering: URL | None = None

    def start_url(self) -> URL:
        """Where a journal without a stored cursor starts (AEP_EXPORTER_JOURNAL_START)."""
        if self._start == "latest":
            return self._url.update_query(latest="true")
        if isinstance(self._start, float):
            return self._url.update_query(seek=_seek(self._start))
        return self._url  # oldest: no parameters

    def recovery_url(self) -> URL:
        """After a 410: back to the newest recorded event time minus 10 minutes, at most 7 days
        (the whole journal when no event time is known); de-duplication absorbs the overlap."""
        known = self.cursor.time if self.cursor is not None else None
        back = JOURNAL_RETENTION_SECONDS
        if known is not None:
            back = min(back, max(0.0, self._clock() - known) + RESEEK_OVERLAP)
        return self._url.update_query(seek=_seek(back))

    async def run(self) -> None:
        """Forever: load the cursor, then fetch, record and follow `next`."""
        url: URL | None = None
        failures = 0
        while True:
            delay = 0.0
            try:
                if url is None:
                    url = await self._resume()
                delay, url = await self.step(url)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a poller never stops; the state logs it
                self.state.failed(exc)
                failures += 1
                delay = self._delay(failures, exc)
            else:
                failures = 0
                self.state.succeeded()
            if delay > 0:
                await asyncio.sleep(delay)

    async def _resume(self) -> URL:
        text = await self._recorder.run_in_writer(
            lambda: self._recorder.store.get_cursor(CURSOR_SOURCE)
        )
        self.cursor = JournalCursor.parse(text)
        if self.cursor is not None:
            log.info(
                "journal resumes from the stored cursor", extra={"position": self.cursor.position}
            )
            return URL(self.cursor.next)
        log.info("journal starts without a cursor", extra={"start": str(self._start)})
        return self.start_url()

    async def step(self, url: URL) -> tuple[float, URL]:
        """One request: the seconds to wait before the next, and the URL it goes to."""
        try:
            response = await self._tokens.request(AdobeApi.JOURNAL, "GET", url, check=_page_shape)
        except AdobeStatusError as exc:
            if exc.status != 410 or url == self._recovering:
                raise
            self._on_reset()
            recovery = self.recovery_url()
            log.warning(
                "journal position expired (410); seeking back",
                extra={
                    "seek": recovery.query.get("seek"),
                    "position": self.cursor.position if self.cursor else None,
                },
            )
            self._recovering = recovery
            return 0.0, recovery
        self._recovering = None
        following = response.links.get("next")
        if response.status == 204 or not response.data or not response.data["events"]:
            # The end: the position stays; wait as asked (protocol notes §9.3, not as §9.5).
            target = following or url
            if self.cursor is None or self.cursor.next != str(target):
                await self._commit([], JournalCursor(str(target), *self._last()))
            self._on_success()
            wait = response.retry_after if response.retry_after is not None else DEFAULT_RETRY_AFTER
            return min(wait, MAX_RETRY_AFTER_SECONDS), target
        entries = response.data["events"]
        bodies = [_body(entry) for entry in entries]
        now = self._clock()
        times = [t for e in entries if (t := event_time(_event_of(e), now)) is not None]
        previous = self.cursor.time if self.cursor is not None else None
        newest = max([*times, *([previous] if previous is not None else [])], default=None)
        last = entries[-1].get("position") if isinstance(entries[-1], dict) else None
        # Without a next link the page is re-read later (duplicates), never skipped.
        target = following or url
        await self._commit(bodies, JournalCursor(str(target), _text(last), newest))
        if following is None:
            raise AdobeInvalidResponse(
                f"journal GET {url.path}: a page without a next link",
                api=AdobeApi.JOURNAL,
                result=RequestResult.INVALID,
                status=response.status,
            )
        self._on_success()
        return 0.0, following

    def _last(self) -> tuple[str | None, float | None]:
        return (self.cursor.position, self.cursor.time) if self.cursor else (None, None)

    async def _commit(self, bodies: list[bytes], cursor: JournalCursor) -> None:
        delivery = Delivery(
            Source.JOURNAL,
            self._clock(),
            verified=True,  # TLS and the token prove where it came from (protocol notes §18.13)
            cursor=Cursor(CURSOR_SOURCE, cursor.text()),
        )
        # Shielded: a poller stopped meanwhile still lets the page commit and be counted.
        page = await asyncio.shield(self._pipeline.ingest_bodies(bodies, delivery))
        self.cursor = cursor
        if page.refused:
            log.warning(
                "journal documents refused and skipped",
                extra={"count": len(page.refused), "reason": page.refused[0].value},
            )

    def _delay(self, failures: int, exc: Exception) -> float:
        initial, ceiling = self._backoff
        delay = min(ceiling, initial * 2.0 ** min(failures - 1, 30))
        delay = max(initial, min(ceiling, delay * (0.5 + self._jitter())))
        retry_after = exc.retry_after if isinstance(exc, AdobeError) else None
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER_SECONDS))
        return delay


def _event_of(entry: Any) -> Any:
    return entry.get("event") if isinstance(entry, dict) and "event" in entry else entry


def _body(entry: Any) -> bytes:
    # The event as delivered; an entry without one is kept whole (a dead letter shows it).
    return compact_json(_event_of(entry))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
