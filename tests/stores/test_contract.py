"""The StateStore contract: every backend passes these, parameterized by `make_store`."""

from __future__ import annotations

import pytest

from exporter.domain import NO_RECIPIENTS, FlowKey, Recipients
from exporter.records import FlowState, NewestRun
from exporter.stores.protocol import DeadLetterBounds, StateStore
from tests.stores.conftest import BUCKET_COUNT, StoreFactory

FLOW_A = FlowKey("prod", "flow-a")
FLOW_B = FlowKey("dev", "flow-b")
BOUNDS = DeadLetterBounds(max_count=100, max_bytes=10**6)


class Boom(Exception):
    """Raised inside a transaction to make it roll back."""


def record(key: FlowKey, successes: int = 0, at: float = 100.0) -> FlowState:
    """A flow record with some successful runs."""
    state = FlowState.new(key, at, BUCKET_COUNT)
    state.runs["success"] = successes
    return state


def add_letter(store: StateStore, digest: str, event_id: str | None = None, at: float = 1.0) -> int:
    """Store one dead letter in its own transaction; how many were evicted."""
    with store.transaction():
        return store.add_dead_letter(
            received_at=at,
            reason="unknown document shape",
            event_id=event_id,
            doc_hash=digest,
            body=b'{"x":1}',
            recipients=NO_RECIPIENTS,
            bounds=BOUNDS,
        )


def test_claiming_new_keys_succeeds_once(make_store: StoreFactory) -> None:
    """Keys nobody holds are claimed; claiming any of them again is refused."""
    store = make_store()
    with store.transaction():
        assert store.claim_keys(["event:1", "run:r1:success"], 10.0)
    with store.transaction():
        assert not store.claim_keys(["event:1"], 11.0)
        assert not store.claim_keys(["event:2", "run:r1:success"], 11.0)
    assert store.any_key_seen(["run:r1:success"])


def test_a_refused_claim_keeps_none_of_its_keys(make_store: StoreFactory) -> None:
    """A duplicate's other keys stay unseen, as if it never came."""
    store = make_store()
    with store.transaction():
        assert store.claim_keys(["event:1"], 10.0)
        assert not store.claim_keys(["event:2", "event:1", "event:3"], 10.0)
    assert not store.any_key_seen(["event:2"])
    assert not store.any_key_seen(["event:3"])
    with store.transaction():
        assert store.claim_keys(["event:2", "event:3"], 12.0)


def test_claims_within_a_transaction_are_seen_by_it(make_store: StoreFactory) -> None:
    """A key claimed earlier in the same transaction is already taken for a later document."""
    store = make_store()
    with store.transaction():
        assert store.claim_keys(["event:1"], 10.0)
        assert store.any_key_seen(["event:0", "event:1"])
        assert not store.claim_keys(["event:1"], 10.0)


def test_claiming_no_keys_and_repeated_keys(make_store: StoreFactory) -> None:
    """An empty claim succeeds; a key listed twice in one claim counts once."""
    store = make_store()
    with store.transaction():
        assert store.claim_keys([], 10.0)
        assert store.claim_keys(["event:1", "event:1"], 10.0)
    assert not store.any_key_seen([])


def test_a_rolled_back_transaction_keeps_nothing(make_store: StoreFactory) -> None:
    """Keys, records, dead letters and the cursor of a failed transaction are all gone."""
    store = make_store()

    def fail_midway() -> None:
        with store.transaction():
            assert store.claim_keys(["event:1"], 10.0)
            store.put_flows([record(FLOW_A, 3)])
            store.add_dead_letter(
                received_at=1.0, reason="r", event_id=None, doc_hash="h", body=b"{}",
                recipients=NO_RECIPIENTS, bounds=BOUNDS,
            )  # fmt: skip
            store.put_cursor("journal", "https://journal/next", 10.0)
            raise Boom

    with pytest.raises(Boom):
        fail_midway()
    assert not store.any_key_seen(["event:1"])
    assert store.lock_flows([FLOW_A]) == {}
    assert store.load_flows() == {}
    assert store.count_flows() == 0
    assert store.count_dead_letters() == 0
    assert store.get_cursor("journal") is None


def test_flow_records_are_stored_replaced_and_deleted(make_store: StoreFactory) -> None:
    """put_flows inserts or replaces; delete_flows removes; lock_flows returns what exists."""
    store = make_store()
    with store.transaction():
        store.put_flows([record(FLOW_A, 1), record(FLOW_B, 2)])
    with store.transaction():
        locked = store.lock_flows([FLOW_A, FlowKey("prod", "absent")])
        assert set(locked) == {FLOW_A}
        changed = locked[FLOW_A].copy()
        changed.runs["success"] += 1
        store.put_flows([changed])
    assert store.load_flows()[FLOW_A].runs["success"] == 2
    assert store.count_flows() == 2
    with store.transaction():
        store.delete_flows([FLOW_B])
    assert set(store.load_flows()) == {FLOW_A}
    assert store.count_flows() == 1


def test_records_keys_letters_and_cursors_survive_reopening(make_store: StoreFactory) -> None:
    """What was committed is there, equal, after the store is closed and opened again."""
    store = make_store()
    state = record(FLOW_A, 5)
    state.error_codes["E-1"] = 2
    state.duration_buckets[1] = 1
    with store.transaction():
        store.put_flows([state])
        assert store.claim_keys(["event:1"], 10.0)
        store.put_cursor("journal", "https://journal/next", 10.0)
    add_letter(store, "h1", "ev-1")
    store.close()
    reopened = make_store()
    loaded = reopened.load_flows()[FLOW_A]
    assert loaded.to_json() == state.to_json()
    assert reopened.any_key_seen(["event:1"])
    assert reopened.get_cursor("journal") == "https://journal/next"
    assert [letter.doc_hash for letter in reopened.dead_letters()] == ["h1"]


def test_a_cursor_is_replaced_per_source(make_store: StoreFactory) -> None:
    """Each pull source has one cursor; putting a new one replaces it."""
    store = make_store()
    with store.transaction():
        store.put_cursor("journal", "first", 1.0)
    with store.transaction():
        store.put_cursor("journal", "second", 2.0)
        store.put_cursor("reconcile", "other", 2.0)
    assert store.get_cursor("journal") == "second"
    assert store.get_cursor("reconcile") == "other"
    assert store.get_cursor("absent") is None


def test_dead_letters_are_found_by_hash_or_event_id(make_store: StoreFactory) -> None:
    """A stored dead letter is seen by its content hash, or by its event id."""
    store = make_store()
    add_letter(store, "h1", "ev-1")
    assert store.dead_letter_seen(None, "h1")
    assert store.dead_letter_seen("ev-1", "other-hash")
    assert not store.dead_letter_seen("ev-2", "h2")
    assert not store.dead_letter_seen(None, "h2")


def test_dead_letters_are_bounded_by_count_and_bytes(make_store: StoreFactory) -> None:
    """Beyond either bound the oldest dead letters are evicted, and the eviction is counted."""
    store = make_store()
    by_count = DeadLetterBounds(max_count=3, max_bytes=10**6)
    evicted = 0
    with store.transaction():
        for number in range(5):
            evicted += store.add_dead_letter(
                received_at=float(number), reason="r", event_id=None, doc_hash=f"h{number}",
                body=b"x" * 100, recipients=NO_RECIPIENTS, bounds=by_count,
            )  # fmt: skip
    assert evicted == 2
    assert [letter.doc_hash for letter in store.dead_letters()] == ["h2", "h3", "h4"]
    by_bytes = DeadLetterBounds(max_count=100, max_bytes=250)
    with store.transaction():
        evicted = store.add_dead_letter(
            received_at=9.0, reason="r", event_id=None, doc_hash="big", body=b"y" * 200,
            recipients=NO_RECIPIENTS, bounds=by_bytes,
        )  # fmt: skip
    assert evicted == 3
    assert [letter.doc_hash for letter in store.dead_letters()] == ["big"]


def test_dead_letters_are_listed_deleted_and_purged(make_store: StoreFactory) -> None:
    """Listing is oldest first and by id; delete removes by id; purge by age or all."""
    store = make_store()
    for number in range(4):
        add_letter(store, f"h{number}", at=float(number))
    letters = store.dead_letters()
    assert [letter.received_at for letter in letters] == [0.0, 1.0, 2.0, 3.0]
    assert [letter.doc_hash for letter in store.dead_letters([letters[1].id])] == ["h1"]
    assert store.dead_letters([]) == []
    with store.transaction():
        assert store.delete_dead_letters([letters[0].id]) == 1
    assert store.purge_dead_letters(older_than=2.0) == 1
    assert store.count_dead_letters() == 2
    assert store.purge_dead_letters(older_than=None) == 2
    assert store.count_dead_letters() == 0


@pytest.mark.parametrize(
    "recipients",
    [
        NO_RECIPIENTS,
        Recipients(frozenset({"our-client-id", "another-of-ours"})),
        Recipients(frozenset({"someone"}), unmatchable=True),
    ],
)
def test_a_dead_letter_keeps_its_recipients(
    make_store: StoreFactory, recipients: Recipients
) -> None:
    """The recipient ids a dead letter arrived with are read back as they were stored."""
    store = make_store()
    with store.transaction():
        store.add_dead_letter(
            received_at=1.0, reason="r", event_id=None, doc_hash="h", body=b"{}",
            recipients=recipients, bounds=BOUNDS,
        )  # fmt: skip
    assert [letter.recipients for letter in store.dead_letters()] == [recipients]


def test_old_keys_are_pruned(make_store: StoreFactory) -> None:
    """prune_keys forgets keys claimed before the cut-off and keeps newer ones."""
    store = make_store()
    with store.transaction():
        assert store.claim_keys(["event:old"], 10.0)
        assert store.claim_keys(["event:new"], 20.0)
    assert store.prune_keys(older_than=15.0) == 1
    assert not store.any_key_seen(["event:old"])
    assert store.any_key_seen(["event:new"])


def full_record(key: FlowKey) -> FlowState:
    """A flow record with every field set, as a busy flow's would be."""
    state = record(key, 5)
    state.runs_with_errors, state.runs_started = 1, 7
    state.error_codes = {"E-1": 2, "other": 1}
    state.totals["input_records"] = 10**12
    state.activities = {"ingest": {"success": 3, "failed": 1, "other": 0}}
    state.duration_buckets[1], state.duration_sum = 2, 61.5
    state.last_completed = {"success": 1_700_000_000.5, "failed": 1_699_999_000.0}
    state.newest = NewestRun(1_700_000_000.5, True, 30.0, 10, None)
    state.open_runs = {"run-9": 1_700_000_100.0}
    state.alerts = {"delay": (1, 1_700_000_050.0)}
    state.flow_name, state.ims_org = "Orders", "ORG@AdobeOrg"
    return state


def test_a_sound_store_passes_its_integrity_check(make_store: StoreFactory) -> None:
    """A new store, and one holding every kind of data, pass check_integrity unchanged."""
    store = make_store()
    store.check_integrity()
    with store.transaction():
        store.put_flows([full_record(FLOW_A), record(FLOW_B, 1)])
        assert store.claim_keys(["event:1"], 10.0)
        store.put_cursor("journal", "https://journal/next", 10.0)
    add_letter(store, "h1", "ev-1")
    store.close()
    reopened = make_store()
    reopened.check_integrity()
    assert reopened.load_flows()[FLOW_A].to_json() == full_record(FLOW_A).to_json()
    assert reopened.count_flows() == 2


def test_the_readiness_check_commits_and_keeps_nothing(make_store: StoreFactory) -> None:
    """check_writable commits a delivery-sized transaction on a healthy store; no data changes."""
    store = make_store()
    with store.transaction():
        store.put_flows([record(FLOW_A, 1)])
        store.put_cursor("journal", "first", 1.0)
    store.check_writable(256 * 1024)
    store.check_writable(256 * 1024)
    assert store.count_flows() == 1
    assert store.get_cursor("journal") == "first"
    store.close()
    reopened = make_store()
    reopened.check_integrity()
    assert set(reopened.load_flows()) == {FLOW_A}
    assert reopened.get_cursor("journal") == "first"
