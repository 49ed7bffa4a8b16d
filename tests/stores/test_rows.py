"""How every backend writes a flow record: ASCII JSON that reads back as the record."""

from __future__ import annotations

import json
import math

import pytest

from exporter.domain import FlowKey
from exporter.records import FlowState
from exporter.stores.rows import record_text


@pytest.mark.parametrize("name", ["plain flow", "Größe 流", "lone \ud800 surrogate", None])
def test_a_record_is_written_as_ascii_json_that_reads_back_the_same(name: str | None) -> None:
    """Whatever its names hold, the text is ASCII and `json.loads` gives the record's data back."""
    state = FlowState.new(FlowKey("prod", "flow-1"), 1_764_650_000.125, 3)
    state.flow_name = name
    state.error_codes["CONNECTOR-2001-500"] = 2
    state.duration_sum = 27.371
    text = record_text(state)
    assert text.isascii()
    assert json.loads(text) == state.to_json()
    assert FlowState.from_json(state.key, json.loads(text), 3) == state


def test_non_finite_numbers_are_written_as_json_writes_them() -> None:
    """The same `Infinity` constant `json` writes, so a record reads back as it always did."""
    state = FlowState.new(FlowKey("prod", "flow-1"), 1.0, 3)
    state.duration_sum = math.inf
    assert '"duration_sum":Infinity' in record_text(state)
    assert json.loads(record_text(state))["duration_sum"] == math.inf
