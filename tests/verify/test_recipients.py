"""Recipient ids: a delivery meant for another client id is refused (protocol notes §18.11)."""

from __future__ import annotations

import pytest

from exporter.domain import Document, FlowKey, FlowStart
from exporter.rejections import Rejected
from exporter.verify.recipients import check_recipients

OURS = frozenset({"our-client-id", "our-second-client-id"})


def document(recipient: str | None) -> Document:
    """A start document carrying the given recipient id (None: no recipient field)."""
    return Document(
        event=FlowStart(flow=FlowKey("prod", "flow-1"), run_id="run-1", started_at=None),
        dedup_keys=("run-1:started",),
        recipient=recipient,
    )


def test_our_recipient_is_accepted() -> None:
    """Documents naming any configured client id pass and count nothing as missing."""
    documents = [document("our-client-id"), document("our-second-client-id")]
    assert check_recipients(documents, client_ids=OURS, require=True) == 0


def test_a_foreign_recipient_is_a_mismatch() -> None:
    """One document naming another client id refuses the whole delivery."""
    documents = [document("our-client-id"), document("someone-else")]
    with pytest.raises(Rejected) as caught:
        check_recipients(documents, client_ids=OURS, require=False)
    assert caught.value.reason == "recipient_mismatch"


def test_the_deprecated_field_is_checked_like_the_new_one() -> None:
    """A recipient resolved from recipient_client_id is held to the same client ids."""
    # Document.recipient resolves recipientclientid, else recipient_client_id (protocol notes §1.2):
    # the check sees one value whichever field carried it.
    with pytest.raises(Rejected) as caught:
        check_recipients([document("deprecated-field-id")], client_ids=OURS, require=False)
    assert caught.value.reason == "recipient_mismatch"
    assert check_recipients([document("our-client-id")], client_ids=OURS, require=False) == 0


def test_an_absent_recipient_is_accepted_and_counted() -> None:
    """Documents without a recipient id pass and are counted (Adobe may not send one for AEP)."""
    documents = [document(None), document("our-client-id"), document(None), document("")]
    assert check_recipients(documents, client_ids=OURS, require=False) == 3


def test_an_absent_recipient_is_refused_when_required() -> None:
    """--require-recipient turns a document without a recipient id into recipient_missing."""
    with pytest.raises(Rejected) as caught:
        check_recipients([document("our-client-id"), document(None)], client_ids=OURS, require=True)
    assert caught.value.reason == "recipient_missing"


def test_a_mismatch_wins_over_a_missing_recipient() -> None:
    """A foreign recipient anywhere in the delivery is reported as recipient_mismatch."""
    with pytest.raises(Rejected) as caught:
        check_recipients([document(None), document("someone-else")], client_ids=OURS, require=True)
    assert caught.value.reason == "recipient_mismatch"


@pytest.mark.parametrize("require", [False, True])
def test_nothing_is_checked_without_client_ids(require: bool) -> None:
    """With no client ids configured, any recipient (or none) passes and nothing is counted."""
    documents = [document("someone-else"), document(None)]
    assert check_recipients(documents, client_ids=frozenset(), require=require) == 0


def test_an_empty_delivery_passes() -> None:
    """A delivery without documents has nothing to refuse."""
    assert check_recipients([], client_ids=OURS, require=True) == 0
