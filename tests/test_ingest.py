"""The ingest pipeline without HTTP: what a pull source gets when it hands over a body."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from exporter.config import Settings
from exporter.domain import Recipients, Source
from exporter.ingest import Delivery
from exporter.recorder import Cursor, Result
from exporter.rejections import Rejected, Rejection
from exporter.service import Exporter, build_exporter, running
from tests.conftest import Clock
from tests.payload_builders import body, legacy, run_object

RECEIVED = 1_800_000_000.0


@pytest.fixture
async def exporter(tmp_path: Path) -> AsyncIterator[Exporter]:
    """A running exporter's parts (store open), with our client id configured."""
    settings = Settings(
        state_path=tmp_path / "state.db", insecure_accept_unsigned=True, client_ids=["ours"]
    )
    exporter = build_exporter(settings, CollectorRegistry(), clock=Clock(RECEIVED))
    async with running(exporter):
        yield exporter


def journal(cursor: str | None = None) -> Delivery:
    """A delivery as the journal poller will make it: proven by TLS and token, with a cursor."""
    position = Cursor("journal", cursor) if cursor is not None else None
    return Delivery(Source.JOURNAL, RECEIVED, verified=True, cursor=position)


async def cursor_of(exporter: Exporter) -> str | None:
    """The journal cursor the store holds now."""
    store = exporter.recorder.store
    return await exporter.recorder.run_in_writer(lambda: store.get_cursor("journal"))


async def test_a_cursor_commits_with_the_documents_before_it(exporter: Exporter) -> None:
    """The cursor is stored in the transaction that records the page's documents."""
    page = body(legacy("e1", run_object(run_id="r1")))
    ingested = await exporter.pipeline.ingest_body(page, journal("https://journal/next-1"))
    assert ingested.results == [Result.RECORDED]
    assert await cursor_of(exporter) == "https://journal/next-1"
    again = await exporter.pipeline.ingest_body(page, journal("https://journal/next-2"))
    assert again.results == [Result.DUPLICATE]
    assert await cursor_of(exporter) == "https://journal/next-2"


async def test_a_refused_body_moves_no_cursor(exporter: Exporter) -> None:
    """A document for another registration refuses the body: nothing recorded, cursor kept."""
    foreign = {**legacy("e1", run_object(run_id="r1")), "recipient_client_id": "theirs"}
    with pytest.raises(Rejected) as refused:
        await exporter.pipeline.ingest_body(body(foreign), journal("https://journal/next"))
    assert refused.value.reason is Rejection.RECIPIENT_MISMATCH
    assert await cursor_of(exporter) is None
    assert exporter.recorder.flows == {}


async def test_a_store_that_cannot_write_refuses_and_keeps_the_cursor(
    exporter: Exporter,
) -> None:
    """When the commit fails the body is refused as store_unavailable and no cursor moves."""
    store = exporter.recorder.store
    await exporter.recorder.run_in_writer(
        lambda: store.db.execute("PRAGMA query_only=ON")  # type: ignore[attr-defined]
    )
    page = body(legacy("e1", run_object(run_id="r1")))
    with pytest.raises(Rejected) as refused:
        await exporter.pipeline.ingest_body(page, journal("https://journal/next"))
    assert refused.value.reason is Rejection.STORE_UNAVAILABLE
    assert not exporter.recorder.ready
    with pytest.raises(Rejected):
        await exporter.pipeline.ingest_body(page, journal("https://journal/next"))
    await exporter.recorder.run_in_writer(
        lambda: store.db.execute("PRAGMA query_only=OFF")  # type: ignore[attr-defined]
    )
    assert await cursor_of(exporter) is None


async def test_unproven_bodies_that_are_not_json_are_refused(exporter: Exporter) -> None:
    """Not JSON: refused as invalid_json when unproven, kept as a dead letter when proven."""
    unproven = Delivery(Source.WEBHOOK, RECEIVED, verified=False)
    with pytest.raises(Rejected) as refused:
        await exporter.pipeline.ingest_body(b"not json", unproven)
    assert refused.value.reason is Rejection.INVALID_JSON
    kept = await exporter.pipeline.ingest_body(b"not json", journal())
    assert kept.results == [Result.DEAD_LETTERED]
    assert kept.summary() == {"dead_lettered": 1}


async def test_recipients_a_body_arrived_with_are_held_to_the_rules(exporter: Exporter) -> None:
    """A replayed letter's stored recipients refuse it even when its own text names no one."""
    page = body(legacy("e1", run_object(run_id="r1")))
    stored = Delivery(
        Source.WEBHOOK, RECEIVED, verified=True, recipients=Recipients(frozenset({"theirs"}))
    )
    with pytest.raises(Rejected) as refused:
        exporter.pipeline.documents(page, stored)
    assert refused.value.reason is Rejection.RECIPIENT_MISMATCH


async def test_a_dead_letter_keeps_the_recipients_of_its_delivery(exporter: Exporter) -> None:
    """Each document carries every id its delivery named; a dead letter stores them."""
    delivery = body([{"recipientclientid": "ours", "mystery": 1}, {"recipient_client_id": "ours"}])
    ingested = await exporter.pipeline.ingest_body(delivery, journal())
    assert ingested.results == [Result.DEAD_LETTERED, Result.DEAD_LETTERED]
    store = exporter.recorder.store
    letters = await exporter.recorder.run_in_writer(store.dead_letters)
    assert [letter.recipients for letter in letters] == [Recipients(frozenset({"ours"}))] * 2
