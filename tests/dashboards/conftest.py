"""Fixtures for the dashboard tests: the committed dashboards and the names queries may read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.metrics.families import exposed_sample_names
from tests.dashboards.queries import load_dashboards

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "deploy" / "prometheus" / "rules"
# Series Prometheus itself writes for every scrape target (not exporter metrics).
PROMETHEUS_SERIES = frozenset({"up", "scrape_samples_scraped"})


def recording_rule_names() -> frozenset[str]:
    """Names recorded by deploy/prometheus/rules/*.yml (none while that directory is absent)."""
    names: set[str] = set()
    for path in sorted(RULES_DIR.glob("*.yml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for group in document.get("groups", []):
            names.update(rule["record"] for rule in group.get("rules", []) if "record" in rule)
    return frozenset(names)


@pytest.fixture(scope="session")
def dashboards() -> dict[str, dict[str, Any]]:
    """Committed dashboard JSON by file name."""
    return load_dashboards()


@pytest.fixture(scope="session")
def known_names() -> frozenset[str]:
    """Every series name a dashboard query may read."""
    return exposed_sample_names() | recording_rule_names() | PROMETHEUS_SERIES
