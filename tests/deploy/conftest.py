"""Shared helpers for the deploy-file tests: paths, external tools, parsed deploy files."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.config import ENV_PREFIX, Settings, load_settings
from tests.support import require_tool, run_tool

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
KUBERNETES = DEPLOY / "kubernetes"


def unknown_setting_names(env: Mapping[str, str]) -> list[str]:
    """The AEP_EXPORTER_* names in env that match no field of Settings (typos go unnoticed)."""
    return sorted(
        name
        for name in env
        if name.startswith(ENV_PREFIX)
        and name.removeprefix(ENV_PREFIX).lower() not in Settings.model_fields
    )


def load_settings_from(env: Mapping[str, str], tmp_path: Path) -> Settings:
    """Settings as the exporter would load them from exactly this environment (no other)."""
    environ = dict(env)
    if f"{ENV_PREFIX}CLIENT_SECRET_FILE" in env:
        # The container path does not exist here; the file's content is what a Secret provides.
        secret = tmp_path / "client-secret"
        secret.write_text("", encoding="utf-8")
        environ[f"{ENV_PREFIX}CLIENT_SECRET_FILE"] = str(secret)
    return load_settings(environ)


def port_of(address: str) -> int:
    """The port of a `host:port` listen address."""
    return int(address.rpartition(":")[2])


# -- Kubernetes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    """The resources `kubectl kustomize deploy/kubernetes` renders."""

    resources: list[dict[str, Any]]

    def all_of(self, kind: str) -> list[dict[str, Any]]:
        """Every resource of a kind."""
        return [r for r in self.resources if r["kind"] == kind]

    def one(self, kind: str, name_prefix: str = "") -> dict[str, Any]:
        """The single resource of a kind whose name starts with name_prefix."""
        found = [r for r in self.all_of(kind) if r["metadata"]["name"].startswith(name_prefix)]
        assert len(found) == 1, f"expected one {kind} named {name_prefix}*, got {len(found)}"
        return found[0]

    def named(self, kind: str, name: str) -> dict[str, Any] | None:
        """The resource of a kind with exactly this name, if rendered."""
        return next((r for r in self.all_of(kind) if r["metadata"]["name"] == name), None)


@pytest.fixture(scope="session")
def rendered() -> Rendered:
    """The kustomize base, rendered once per session with kubectl."""
    kubectl = require_tool("kubectl")
    result = run_tool([kubectl, "kustomize", str(KUBERNETES)])
    assert result.returncode == 0, f"kubectl kustomize failed:\n{result.stderr}"
    return Rendered([doc for doc in yaml.safe_load_all(result.stdout) if doc])


def exporter_container(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """The exporter container of the Deployment's pod template."""
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["exporter"]
    result: dict[str, Any] = containers[0]
    return result


# -- Compose and Dockerfile ------------------------------------------------------------------


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    """deploy/compose.yaml as written (paths relative to deploy/)."""
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    return data


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    keyword: str
    arguments: str

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form instruction (ValueError if it is shell form)."""
        value = json.loads(self.arguments)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{self.keyword} is not a JSON array of strings")
        return value

    def words(self) -> list[str]:
        """The arguments split as the shell would."""
        return shlex.split(self.arguments)


def parse_dockerfile(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile: comments dropped, `\\` continuations joined."""
    instructions: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # Docker drops comment lines inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "Dockerfile ends inside a continued instruction"
    return instructions


@pytest.fixture(scope="session")
def dockerfile() -> list[Instruction]:
    """The instructions of deploy/Dockerfile."""
    return parse_dockerfile((DEPLOY / "Dockerfile").read_text(encoding="utf-8"))


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """The instructions grouped by build stage (each list starts with its FROM)."""
    result: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def dockerfile_env(instructions: list[Instruction]) -> dict[str, str]:
    """The ENV values the final stage sets (key=value form)."""
    env: dict[str, str] = {}
    for instruction in stages(instructions)[-1]:
        if instruction.keyword == "ENV":
            for word in instruction.words():
                name, sep, value = word.partition("=")
                assert sep, f"ENV {word!r} is not in key=value form"
                env[name] = value
    return env
