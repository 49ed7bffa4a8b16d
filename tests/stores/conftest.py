"""The store backends the contract suite runs against: one fixture parameter per backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from exporter.stores.postgres import PostgresStore
from exporter.stores.protocol import StateStore
from exporter.stores.sqlite import SQLiteStore

BUCKET_COUNT = 4
StoreFactory = Callable[[], StateStore]


@pytest.fixture(params=["sqlite", "postgres"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Open stores of one backend on one fresh database; each call opens another connection."""
    opened: list[StateStore] = []
    url = ""
    if request.param == "postgres":
        url = request.getfixturevalue("postgres").create_database()

    def make() -> StateStore:
        if request.param == "sqlite":
            store: StateStore = SQLiteStore(tmp_path / "state.db", bucket_count=BUCKET_COUNT)
        else:
            store = PostgresStore(url, bucket_count=BUCKET_COUNT)
        store.open()
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
