"""The journal source through the real service against the loopback fake (protocol notes §9)."""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import json
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from exporter.adobe.fake import SERVER_ERROR, UNAUTHORIZED, Answer, FakeAdobe
from exporter.adobe.ims import MIN_AGE_TO_RENEW_ON_401_SECONDS
from exporter.service import Exporter
from exporter.sources.journal import JournalCursor, JournalPoller
from tests.adobe.conftest import WallClock, adobe_settings, until
from tests.conftest import AppClient, MakeClient
from tests.payload_builders import legacy, run_object

NOTIFICATIONS = "aep_exporter_notifications_total"
RUNS = "aep_flow_runs_total"


def run_event(number: int, *, at: float, recipient: str | None = None) -> dict[str, Any]:
    """A legacy-wrapped success of run `r<number>` of flow f1, completed at `at`."""
    ms = int(at * 1000)
    event = legacy(f"evt-{number}", run_object(run_id=f"r{number}", flow_id="f1", completed_ms=ms))
    if recipient is not None:
        event["recipient_client_id"] = recipient
    return event


def counted(registry: CollectorRegistry, source: str, outcome: str) -> float | None:
    """aep_exporter_notifications_total of runs from one source with one outcome."""
    labels = {"source": source, "kind": "run", "outcome": outcome}
    return registry.get_sample_value(NOTIFICATIONS, labels)


def runs(registry: CollectorRegistry) -> float | None:
    """Successful runs of flow f1 (the store's truth, whatever the source)."""
    labels = {"sandbox": "prod", "flow_id": "f1", "status": "success"}
    return registry.get_sample_value(RUNS, labels)


async def journal_app(
    make_client: MakeClient, fake: FakeAdobe, **overrides: Any
) -> tuple[AppClient, CollectorRegistry, Exporter]:
    """The real app reading the fake's journal (enrichment idle after its first refresh)."""
    return await make_client(**adobe_settings(fake, journal_url=fake.journal_url, **overrides))


async def test_a_multi_page_journal_is_recorded_once(
    make_client: MakeClient, fake: FakeAdobe, clock: WallClock
) -> None:
    """Five events on three pages are recorded once each; the cursor is the absolute next URL
    of the last page, and every URL after the first is a next link (another path prefix)."""
    fake.journal_retry_after = "1"
    positions = fake.add_journal_events(*(run_event(n, at=clock() - 600) for n in range(5)))
    _, registry, exporter = await journal_app(make_client, fake)
    await until(lambda: len(fake.requests_to("journal")) >= 4, "the end of the journal")
    assert runs(registry) == 5
    assert counted(registry, "journal", "recorded") == 5
    assert counted(registry, "journal", "duplicate") == 0
    requests = fake.requests_to("journal")
    assert dict(requests[0].query) == {}
    assert [r.query.get("since") for r in requests[1:4]] == [
        positions[1],
        positions[3],
        positions[4],
    ]
    assert all(r.path.startswith("/events-fast/") for r in requests[1:4])
    store = exporter.recorder.store
    cursor = JournalCursor.parse(
        await exporter.recorder.run_in_writer(lambda: store.get_cursor("journal"))
    )
    assert cursor is not None
    assert cursor.position == positions[4]
    # The 204's next link: the same position, Adobe's prefix (protocol notes §9.3).
    assert cursor.next == f"{fake.journal_url}?since={positions[4]}"
    assert cursor.time == pytest.approx(clock() - 600)
    done = registry.get_sample_value(
        "aep_exporter_poll_last_success_timestamp_seconds", {"task": "journal"}
    )
    assert done == clock()


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_the_end_of_the_journal_is_polled_no_faster_than_retry_after(
    make_client: MakeClient, fake: FakeAdobe, clock: WallClock, form: str
) -> None:
    """At the end (204) the next request waits Retry-After, given in seconds or as a date."""
    fake.journal_retry_after = (
        "1" if form == "seconds" else email.utils.formatdate(clock() + 1, usegmt=True)
    )
    fake.add_journal_events(run_event(1, at=clock() - 60))
    await journal_app(make_client, fake)
    await until(lambda: len(fake.requests_to("journal")) >= 4, "three polls at the end", 8)
    at_end = [r.received for r in fake.requests_to("journal")[1:]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(at_end)]
    assert gaps
    assert all(gap >= 0.9 for gap in gaps), gaps


async def test_throttling_errors_and_a_refused_token_back_off_and_keep_the_cursor(
    make_client: MakeClient, fake: FakeAdobe, clock: WallClock
) -> None:
    """401 renews the token once; 429, 503 and a dropped connection back off (Retry-After
    honoured) and re-ask the same next URL; nothing is lost or counted twice."""
    positions = fake.add_journal_events(*(run_event(n, at=clock() - 60) for n in range(3)))
    _, registry, exporter = await make_client(**adobe_settings(fake))
    assert exporter.adobe is not None
    await exporter.adobe.tokens.token()
    clock.advance(MIN_AGE_TO_RENEW_ON_401_SECONDS)  # a 401 to a fresh token renews nothing
    fake.script(
        "journal", Answer(), UNAUTHORIZED, Answer.throttled("1"), SERVER_ERROR, Answer.throttled()
    )
    poller = JournalPoller(
        exporter.adobe.tokens,
        exporter.pipeline,
        exporter.recorder,
        url=fake.journal_url,
        jitter=lambda: 0.5,
        backoff=(0.05, 0.2),
    )
    task = asyncio.create_task(poller.run())
    try:
        await until(lambda: counted(registry, "journal", "recorded") == 3, "every event")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    requests = fake.requests_to("journal")
    after_first = [r.query.get("since") for r in requests[1:6]]
    assert after_first == [positions[1]] * 5  # 401, its renewed retry (429), 503, 429, the page
    assert fake.tokens_issued == 2
    assert counted(registry, "journal", "duplicate") is None  # nothing was read twice
    assert requests[3].received - requests[2].received >= 0.9  # the 429's Retry-After: 1


async def test_an_expired_position_seeks_back_and_the_overlap_is_absorbed(
    make_client: MakeClient, fake: FakeAdobe, clock: WallClock
) -> None:
    """A 410 is counted, the journal URL is asked with seek = newest event time minus 10 min,
    and the events read again are duplicates, never recorded twice."""
    fake.journal_retry_after = "1"
    ages = [3600, 1800, 300, 200, 100, 50]
    for number, age in enumerate(ages):
        fake.add_journal_events(run_event(number, at=clock() - age), at=clock() - age)
    expired = Answer(410, b"Events at position x have expired.", {"Content-Type": "text/plain"})
    fake.script("journal", Answer(), Answer(), expired)
    _, registry, _ = await journal_app(make_client, fake)
    await until(lambda: counted(registry, "journal", "recorded") == 6, "every event")
    assert runs(registry) == 6
    assert counted(registry, "journal", "duplicate") == 2  # the overlap, read again
    assert registry.get_sample_value("aep_exporter_journal_cursor_resets_total") == 1
    requests = fake.requests_to("journal")
    assert requests[3].path.startswith("/events/")
    # The newest recorded event (200 s old) minus 10 minutes.
    assert dict(requests[3].query) == {"seek": "-PT800S"}


async def test_the_same_event_by_webhook_and_journal_counts_once(
    make_client: MakeClient, fake: FakeAdobe, clock: WallClock
) -> None:
    """A run pushed to the webhook and read from the journal is recorded once; the journal's
    copy counts as a duplicate of source journal."""
    fake.journal_retry_after = "1"
    first, second = run_event(1, at=clock() - 60), run_event(2, at=clock() - 30)
    client, registry, _ = await make_client(
        **adobe_settings(fake, journal_url=fake.journal_url, journal_start="latest")
    )
    await until(lambda: fake.requests_to("journal"), "the journal at its end")
    response = await client.post("/webhook", data=json.dumps(first).encode())
    assert response.status == 200
    fake.add_journal_events(first, second)
    await until(lambda: runs(registry) == 2, "the journal's new run")
    await until(lambda: counted(registry, "journal", "duplicate") == 1, "the journal's copy")
    assert counted(registry, "webhook", "recorded") == 1
    assert counted(registry, "journal", "recorded") == 1
    assert fake.requests_to("journal")[0].query.get("latest") == "true"


async def test_a_document_for_another_recipient_is_counted_and_skipped(
    make_client: MakeClient, fake: FakeAdobe, clock: WallClock
) -> None:
    """The recipient rules apply to journal documents: a foreign one is counted by reason and
    skipped, the rest of its page is recorded and the journal moves on."""
    fake.journal_retry_after = "1"
    positions = fake.add_journal_events(
        run_event(1, at=clock() - 60, recipient="ours"),
        run_event(2, at=clock() - 60, recipient="theirs"),
        run_event(3, at=clock() - 60),
    )
    _, registry, _ = await journal_app(make_client, fake, client_ids=["ours"])
    await until(lambda: runs(registry) == 2, "the two runs of ours")
    await until(lambda: len(fake.requests_to("journal")) >= 3, "the next page")
    rejected = {"reason": "recipient_mismatch"}
    assert registry.get_sample_value("aep_exporter_requests_rejected_total", rejected) == 1
    assert fake.requests_to("journal")[2].query.get("since") == positions[2]


async def test_a_410_to_the_seek_back_itself_backs_off(
    make_client: MakeClient, fake: FakeAdobe, clock: WallClock
) -> None:
    """Without a recorded event time the seek goes back the whole 7 days; a 410 to that seek
    is not reset again at full speed but backed off, then the seek is asked again."""
    fake.add_journal_events(run_event(1, at=clock() - 60))
    _, registry, exporter = await make_client(**adobe_settings(fake))
    assert exporter.adobe is not None
    expired = Answer(410, b"Events at position x have expired.", {"Content-Type": "text/plain"})
    fake.script("journal", expired, expired)
    resets: list[None] = []
    poller = JournalPoller(
        exporter.adobe.tokens,
        exporter.pipeline,
        exporter.recorder,
        url=fake.journal_url,
        on_reset=lambda: resets.append(None),
        jitter=lambda: 0.5,
        backoff=(0.3, 1.0),
    )
    task = asyncio.create_task(poller.run())
    try:
        await until(lambda: runs(registry) == 1, "the event after the seek")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    requests = fake.requests_to("journal")
    assert [dict(r.query) for r in requests[1:3]] == [{"seek": "-PT604800S"}] * 2
    assert requests[2].received - requests[1].received >= 0.25
    assert len(resets) == 1


async def test_an_event_with_a_lone_surrogate_is_recorded_and_the_journal_moves_on(
    make_client: MakeClient, fake: FakeAdobe, clock: WallClock
) -> None:
    """`"\\ud800"` is valid JSON but not UTF-8: the page's event is handed on escaped, so it is
    recorded like any other (its name cleaned) instead of failing the page forever."""
    fake.journal_retry_after = "1"
    broken = run_event(1, at=clock() - 60)
    broken["event"]["flowName"] = "flow \ud800 one"
    fake.add_journal_events(broken, run_event(2, at=clock() - 60))
    _, registry, exporter = await journal_app(make_client, fake)
    await until(lambda: runs(registry) == 2, "both runs")
    assert counted(registry, "journal", "recorded") == 2
    state = next(st for k, st in exporter.recorder.flows.items() if k.flow_id == "f1")
    assert state.flow_name == "flow \ufffd one"
