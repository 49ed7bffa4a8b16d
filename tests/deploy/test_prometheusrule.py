"""The PrometheusRule is generated from deploy/prometheus/rules/*.yml and cannot drift from it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from tests.support import require_tool, run_tool

from .conftest import DEPLOY, KUBERNETES, Rendered

GENERATOR = KUBERNETES / "generate_prometheusrule.py"
COMMITTED = KUBERNETES / "base" / "prometheusrule.yaml"
RULES_DIR = DEPLOY / "prometheus" / "rules"

RULE_FILE = """\
groups:
  - name: example.recording
    interval: 1m
    rules:
      - record: example:runs:increase1h
        expr: |
          max without (instance, pod) (
            increase(aep_flow_runs_total[1h])
          )
  - name: example.alerts
    rules:
      - alert: ExampleFlowFailed
        expr: example:runs:increase1h > 0
        for: 5m
        labels:
          severity: warning
        annotations:
          summary: "Flow {{ $labels.flow_id }} in {{ $labels.sandbox }} failed"
          runbook_url: https://github.com/aep-flow-exporter/aep-flow-exporter/blob/main/README.md#runbook-exampleflowfailed
"""


def generate(*args: str) -> int:
    """Run the generator as operators do; its exit status."""
    return run_tool([sys.executable, str(GENERATOR), *args]).returncode


def committed() -> dict[str, Any]:
    """The committed PrometheusRule."""
    data: dict[str, Any] = yaml.safe_load(COMMITTED.read_text(encoding="utf-8"))
    return data


def test_committed_prometheusrule_matches_the_rule_files() -> None:
    """The committed PrometheusRule is exactly what the generator makes of the rule files."""
    result = run_tool([sys.executable, str(GENERATOR), "--check"])
    assert result.returncode == 0, (
        f"{result.stderr}run: python deploy/kubernetes/generate_prometheusrule.py"
    )


def test_prometheusrule_carries_every_rule_group() -> None:
    """Each group of each rule file is in the PrometheusRule, and there is at least one."""
    names = [
        group["name"]
        for path in sorted(RULES_DIR.glob("*.yml"))
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    ]
    assert names, f"no rule groups in {RULES_DIR.relative_to(DEPLOY.parent)}/*.yml yet"
    assert [group["name"] for group in committed()["spec"]["groups"]] == names


def test_prometheusrule_is_well_formed() -> None:
    """The resource is a monitoring.coreos.com/v1 PrometheusRule of named groups of rules."""
    rule = committed()
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["kind"] == "PrometheusRule"
    assert rule["metadata"]["name"] == "aep-flow-exporter"
    assert "namespace" not in rule["metadata"]
    assert set(rule) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(rule["spec"]) == {"groups"}
    for group in rule["spec"]["groups"]:
        assert isinstance(group["name"], str)
        for one in group["rules"]:
            assert isinstance(one["expr"], str)
            assert ("record" in one) != ("alert" in one), one


def test_prometheusrule_groups_pass_promtool(tmp_path: Path) -> None:
    """promtool accepts the PrometheusRule's groups as a rule file."""
    promtool = require_tool("promtool")
    rule_file = tmp_path / "groups.yml"
    rule_file.write_text(yaml.safe_dump({"groups": committed()["spec"]["groups"]}), "utf-8")
    result = run_tool([promtool, "check", "rules", str(rule_file)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_kustomize_renders_the_committed_prometheusrule(rendered: Rendered) -> None:
    """The base ships the committed PrometheusRule unchanged."""
    assert rendered.one("PrometheusRule") == committed()


def test_generator_round_trips_groups_and_check_detects_staleness(tmp_path: Path) -> None:
    """Generated groups equal the rule files' groups; --check fails before and after a change."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.yml").write_text(RULE_FILE, encoding="utf-8")
    output = tmp_path / "prometheusrule.yaml"
    paths = ("--rules-dir", str(rules), "--output", str(output))

    assert generate(*paths, "--check") == 1
    assert not output.exists()
    assert generate(*paths) == 0
    assert generate(*paths, "--check") == 0
    generated = yaml.safe_load(output.read_text(encoding="utf-8"))
    assert generated["spec"]["groups"] == yaml.safe_load(RULE_FILE)["groups"]
    # PromQL stays readable: multi-line strings keep their block form.
    assert "expr: |\n" in output.read_text(encoding="utf-8")

    (rules / "a.yml").write_text(RULE_FILE.replace("for: 5m", "for: 10m"), encoding="utf-8")
    assert generate(*paths, "--check") == 1


def test_generator_refuses_a_group_name_used_twice(tmp_path: Path) -> None:
    """Two rule files with the same group name are an error (the operator would reject them)."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.yml").write_text(RULE_FILE, encoding="utf-8")
    (rules / "b.yml").write_text(RULE_FILE, encoding="utf-8")
    output = tmp_path / "prometheusrule.yaml"
    result = run_tool(
        [sys.executable, str(GENERATOR), "--rules-dir", str(rules), "--output", str(output)]
    )
    assert result.returncode == 2
    assert "example.recording" in result.stderr
    assert not output.exists()


def runbook_urls(document: dict[str, Any]) -> list[str]:
    """Every alert's runbook_url in a PrometheusRule, in order."""
    return [
        rule["annotations"]["runbook_url"]
        for group in document["spec"]["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def test_committed_prometheusrule_links_the_default_runbook() -> None:
    """Every alert of the committed PrometheusRule links a section of the project's README."""
    urls = runbook_urls(committed())
    assert urls
    base = "https://github.com/aep-flow-exporter/aep-flow-exporter/blob/main/README.md#runbook-"
    assert [url for url in urls if not url.startswith(base)] == []


def test_runbook_base_moves_every_runbook_url(tmp_path: Path) -> None:
    """--runbook-base URL makes each runbook_url URL#runbook-<alert>; nothing else changes."""
    output = tmp_path / "prometheusrule.yaml"
    base = "https://wiki.example.com/ops/aep-flow-exporter"
    assert generate("--output", str(output), "--runbook-base", base) == 0
    moved = yaml.safe_load(output.read_text(encoding="utf-8"))
    original = committed()
    assert runbook_urls(moved) == [
        url.replace(url.split("#", 1)[0], base, 1) for url in runbook_urls(original)
    ]
    assert len(runbook_urls(moved)) == sum(
        "alert" in rule for group in original["spec"]["groups"] for rule in group["rules"]
    )
    # Apart from the links, the groups are the rule files' groups unchanged.
    for group in moved["spec"]["groups"]:
        for rule in group["rules"]:
            rule.get("annotations", {}).pop("runbook_url", None)
    for group in original["spec"]["groups"]:
        for rule in group["rules"]:
            rule.get("annotations", {}).pop("runbook_url", None)
    assert moved == original
    # --check compares against the same base.
    assert generate("--output", str(output), "--runbook-base", base, "--check") == 0
    assert generate("--output", str(output), "--check") == 1


def test_runbook_base_refuses_links_off_the_one_base(tmp_path: Path) -> None:
    """A rule file linking another runbook, or a base with a fragment, is an error (exit 2)."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.yml").write_text(
        RULE_FILE.replace("blob/main/README.md#", "blob/main/OTHER.md#"), encoding="utf-8"
    )
    output = tmp_path / "prometheusrule.yaml"
    result = run_tool(
        [sys.executable, str(GENERATOR), "--rules-dir", str(rules), "--output", str(output)]
    )
    assert result.returncode == 2
    assert "ExampleFlowFailed" in result.stderr
    assert generate("--output", str(output), "--runbook-base", "https://x.example/doc#top") == 2
    assert not output.exists()
