"""deploy/catalogue.example.yaml is a valid catalogue naming the seed flows."""

from __future__ import annotations

from exporter.catalogue import load_catalogue
from exporter.domain import FlowKey

from .conftest import DEPLOY

SEED_FLOWS = {
    FlowKey("prod", "1c6f1047-dcaf-48fe-af10-47dcaf08feaf"),
    FlowKey("prod", "cf4fce79-8822-456d-8fce-798822556dc6"),
}


def test_example_catalogue_loads_with_the_seed_flows() -> None:
    """The exporter's catalogue loader accepts the example, which lists the seed flows."""
    catalogue = load_catalogue(DEPLOY / "catalogue.example.yaml")
    assert set(catalogue.entries) == SEED_FLOWS


def test_example_catalogue_fills_every_field() -> None:
    """Each example entry shows every field, so the example documents the format."""
    catalogue = load_catalogue(DEPLOY / "catalogue.example.yaml")
    for entry in catalogue.entries.values():
        assert entry.name
        assert entry.owner
        assert entry.source
        assert entry.severity
        assert entry.expected_interval is not None
