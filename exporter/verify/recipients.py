"""Recipient ids: refuse documents meant for another Adobe I/O registration."""

from __future__ import annotations

from collections.abc import Sequence

from exporter.domain import Document, Recipients
from exporter.rejections import Rejected, Rejection


def check_named(recipients: Recipients, *, client_ids: frozenset[str]) -> None:
    """Refuse a delivery that names, anywhere, a recipient that is not one of ours."""
    # Client ids are API keys, not secrets: plain set membership is fine here.
    if client_ids and (recipients.unmatchable or not recipients.ids <= client_ids):
        raise Rejected(Rejection.RECIPIENT_MISMATCH, "the delivery names another recipient")


def check_recipients(
    documents: Sequence[Document], *, client_ids: frozenset[str], require: bool
) -> int:
    """Refuse foreign envelope recipients (absent ones too, if required); count the absent."""
    # The envelope is the only place that says whom a document is for (protocol notes §18.11).
    if not client_ids:
        return 0
    missing = 0
    for document in documents:
        if not document.recipient:
            missing += 1
        elif document.recipient not in client_ids:
            raise Rejected(Rejection.RECIPIENT_MISMATCH, "a document names another recipient")
    # AEP may not send a recipient id at all (protocol notes §6 item 2), hence opt-in strictness.
    if missing and require:
        raise Rejected(Rejection.RECIPIENT_MISSING, f"{missing} document(s) without recipient")
    return missing
