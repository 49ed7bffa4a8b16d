"""Fixtures of the payload tests: the two seed documents, normalized."""

from __future__ import annotations

import pytest

from exporter.domain import Document
from tests.payloads.samples import fixture_bytes, only


@pytest.fixture
def seed_success() -> Document:
    """The seed success example (legacy wrapper), normalized."""
    return only(fixture_bytes("seed_success.json"))


@pytest.fixture
def seed_failure() -> Document:
    """The seed failure example (`[{"messages": [...]}]`), normalized."""
    return only(fixture_bytes("seed_failure.json"))
