"""Fixtures for the rule and Alertmanager checks: file locations, parsed rules, the real tools."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import require_tool

REPO = Path(__file__).resolve().parents[2]
RULES_DIR = REPO / "deploy" / "prometheus" / "rules"
RULE_FILES = (RULES_DIR / "recording.yml", RULES_DIR / "alerts.yml")
RULE_TESTS_DIR = REPO / "deploy" / "prometheus" / "tests"
PROMETHEUS_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
ALERTMANAGER_TEMPLATES = REPO / "deploy" / "alertmanager" / "templates"


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule of the shipped files: recording (`record`) or alerting (`alert`)."""

    file: str
    group: str
    body: dict[str, Any]

    @property
    def name(self) -> str:
        """The recorded series or the alert name."""
        return str(self.body.get("record") or self.body["alert"])

    @property
    def expr(self) -> str:
        """The PromQL expression."""
        return str(self.body["expr"])


def load_rules() -> list[Rule]:
    """Every rule of the shipped rule files, in file order."""
    rules: list[Rule] = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            rules.extend(Rule(path.name, group["name"], body) for body in group["rules"])
    return rules


def load_rule_tests() -> dict[str, Any]:
    """The promtool unit-test files, by file name."""
    return {
        path.name: yaml.safe_load(path.read_text(encoding="utf-8"))
        for path in sorted(RULE_TESTS_DIR.glob("*.yml"))
    }


@pytest.fixture(scope="session")
def rules() -> list[Rule]:
    """Every shipped rule."""
    return load_rules()


@pytest.fixture(scope="session")
def alerts(rules: list[Rule]) -> list[Rule]:
    """Every shipped alerting rule."""
    return [rule for rule in rules if "alert" in rule.body]


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool."""
    return require_tool("promtool")


@pytest.fixture(scope="session")
def amtool() -> str:
    """Path of amtool."""
    return require_tool("amtool")


@pytest.fixture(scope="session")
def alertmanager_binary() -> str:
    """Path of the Alertmanager server (Debian names it prometheus-alertmanager)."""
    return require_tool("prometheus-alertmanager", "alertmanager")
