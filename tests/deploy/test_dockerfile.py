"""deploy/Dockerfile checked statically (no Docker engine here); its health check run for real."""

from __future__ import annotations

import asyncio
import re
import sys
import tomllib
from collections.abc import Callable, Coroutine
from pathlib import Path, PurePosixPath
from typing import Any

import bcrypt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from exporter.config import ENV_PREFIX
from exporter.durations import parse_duration
from tests.support import Child, clean_environ

from .conftest import (
    DEPLOY,
    REPO,
    Instruction,
    dockerfile_env,
    load_settings_from,
    parse_dockerfile,
    port_of,
    stages,
    unknown_setting_names,
)

HEALTHCHECK_TIMEOUT = 10.0
# Generous for a loaded 2-core CI machine; a healthy start takes one or two seconds.
STARTUP_TIMEOUT = 20.0
ServerFactory = Callable[..., Coroutine[Any, Any, TestServer]]


def final(dockerfile: list[Instruction], keyword: str) -> Instruction:
    """The last instruction of a kind in the final stage (the one that takes effect)."""
    found = [i for i in stages(dockerfile)[-1] if i.keyword == keyword]
    assert found, f"the final stage has no {keyword}"
    return found[-1]


def healthcheck_command(dockerfile: list[Instruction]) -> list[str]:
    """The HEALTHCHECK's exec-form command."""
    options, _, command = final(dockerfile, "HEALTHCHECK").arguments.partition("CMD ")
    assert all(word.startswith("--") for word in options.split())
    return Instruction("CMD", command).exec_form()


def test_parser_joins_continuations_and_drops_comments() -> None:
    """The test's Dockerfile reader joins continued lines and skips comment lines."""
    text = "# c\nFROM a AS b\nRUN one \\\n    # inside\n    && two\nUSER 1:1\n"
    assert parse_dockerfile(text) == [
        Instruction("FROM", "a AS b"),
        Instruction("RUN", "one && two"),
        Instruction("USER", "1:1"),
    ]


def test_build_has_a_builder_stage_and_a_runtime_stage_with_only_the_venv(
    dockerfile: list[Instruction],
) -> None:
    """A builder installs into /opt/venv; the runtime (python:3.11-slim, pinned) copies only
    that venv."""
    builder, runtime = stages(dockerfile)
    assert builder[0].words()[1:] == ["AS", "builder"]
    assert any("pip install" in i.arguments for i in builder if i.keyword == "RUN")
    assert [i.arguments for i in runtime if i.keyword == "COPY"] == [
        "--from=builder /opt/venv /opt/venv"
    ]
    assert not any("pip" in i.arguments for i in runtime if i.keyword == "RUN")
    base = next(i for i in dockerfile if i.keyword == "ARG" and i.arguments.startswith("PYTHON"))
    name, _, digest = base.arguments.partition("@")
    assert name == "PYTHON_IMAGE=python:3.11-slim"
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), "the base is pinned by digest"
    assert builder[0].words()[0] == runtime[0].words()[0] == "${PYTHON_IMAGE}"


def test_image_carries_the_oci_labels(dockerfile: list[Instruction]) -> None:
    """source, version, revision and licenses are labelled; version and revision are build
    arguments, and the licence is the project's."""
    label = final(dockerfile, "LABEL").arguments
    labels = dict(re.findall(r'org\.opencontainers\.image\.(\w+)="([^"]*)"', label))
    assert labels["source"].startswith("https://")
    assert (labels["version"], labels["revision"]) == ("${VERSION}", "${REVISION}")
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert labels["licenses"] == project["project"]["license"]


def test_image_runs_as_a_fixed_numeric_non_root_user(dockerfile: list[Instruction]) -> None:
    """USER is a numeric UID:GID other than root."""
    uid, _, gid = final(dockerfile, "USER").arguments.partition(":")
    assert uid.isdigit()
    assert gid.isdigit()
    assert int(uid) != 0
    assert int(gid) != 0


def test_entrypoint_is_the_console_script_in_exec_form(dockerfile: list[Instruction]) -> None:
    """ENTRYPOINT is the exec-form `aep-flow-exporter serve`, a script pyproject installs."""
    assert final(dockerfile, "ENTRYPOINT").exec_form() == ["aep-flow-exporter", "serve"]
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "aep-flow-exporter" in project["project"]["scripts"]
    assert final(dockerfile, "STOPSIGNAL").arguments == "SIGTERM"


def test_every_copy_source_exists_and_is_in_the_build_context(
    dockerfile: list[Instruction],
) -> None:
    """Each COPY from the context names a file of the repo that the .dockerignore lets through."""
    allowed = {
        line[1:]
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    }
    sources = [
        source
        for instruction in dockerfile
        if instruction.keyword == "COPY" and not instruction.arguments.startswith("--from")
        for source in instruction.words()[:-1]
    ]
    assert sources
    assert [s for s in sources if not (REPO / s).exists()] == []
    assert [s for s in sources if s not in allowed] == []


def test_ports_volume_and_environment_agree(dockerfile: list[Instruction], tmp_path: Path) -> None:
    """The image exposes both listeners, keeps state in its VOLUME, and sets real settings."""
    env = dockerfile_env(dockerfile)
    assert unknown_setting_names(env) == []
    settings = load_settings_from(env, tmp_path)
    exposed = sorted(int(port) for port in final(dockerfile, "EXPOSE").words())
    assert exposed == sorted(
        [port_of(settings.listen_address), port_of(settings.metrics_listen_address)]
    )
    volume = final(dockerfile, "VOLUME").arguments
    assert str(PurePosixPath(env[f"{ENV_PREFIX}STATE_PATH"]).parent) == volume
    assert env["PATH"].startswith("/opt/venv/bin:")


def test_healthcheck_uses_python_not_curl(dockerfile: list[Instruction]) -> None:
    """The health check runs the image's Python against /healthz (the slim image has no curl)."""
    command = healthcheck_command(dockerfile)
    assert command[:2] == ["python", "-c"]
    assert "/healthz" in command[2]


async def run_healthcheck(dockerfile: list[Instruction], env: dict[str, str]) -> int:
    """Run the HEALTHCHECK command with this interpreter and env; its exit status."""
    command = healthcheck_command(dockerfile)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *command[1:],
        env=clean_environ(env),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        return await asyncio.wait_for(process.wait(), HEALTHCHECK_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise


@pytest.mark.parametrize(
    ("status", "expected_exit"), [(200, 0), (503, 1)], ids=["healthy", "unhealthy"]
)
async def test_healthcheck_follows_healthz_on_the_webhook_listener(
    aiohttp_server: ServerFactory,
    unused_tcp_port: int,
    dockerfile: list[Instruction],
    status: int,
    expected_exit: int,
) -> None:
    """The health check exits 0 when the webhook listener's /healthz answers 200, else 1."""

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(status=status, text="ok\n")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    server = await aiohttp_server(app, host="127.0.0.1")
    env = {
        f"{ENV_PREFIX}LISTEN_ADDRESS": f"0.0.0.0:{server.port}",
        # The metrics listener may sit behind TLS or basic auth: the check never asks it.
        f"{ENV_PREFIX}METRICS_LISTEN_ADDRESS": f"0.0.0.0:{unused_tcp_port}",
    }
    assert await run_healthcheck(dockerfile, env) == expected_exit


async def test_healthcheck_fails_when_nothing_listens(
    unused_tcp_port: int, dockerfile: list[Instruction]
) -> None:
    """The health check exits non-zero when no server answers."""
    env = {f"{ENV_PREFIX}LISTEN_ADDRESS": f"0.0.0.0:{unused_tcp_port}"}
    assert await run_healthcheck(dockerfile, env) == 1


@pytest.mark.parametrize("metrics_auth", [False, True], ids=["open", "basic-auth-metrics"])
async def test_entrypoint_with_image_environment_turns_healthy_and_stops_on_stopsignal(
    unused_tcp_port_factory: Callable[[], int],
    dockerfile: list[Instruction],
    tmp_path: Path,
    metrics_auth: bool,
) -> None:
    """The real exporter, run as the image runs it, passes HEALTHCHECK and exits 0 on SIGTERM."""
    env = {k: v for k, v in dockerfile_env(dockerfile).items() if k.startswith(ENV_PREFIX)}
    if metrics_auth:
        # Basic auth on the metrics listener must not make the container unhealthy.
        hashed = bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=4)).decode()
        web_config = tmp_path / "web-config.yml"
        web_config.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n", "utf-8")
        env[f"{ENV_PREFIX}WEB_CONFIG_FILE"] = str(web_config)
    # The image's settings, with the listeners moved to loopback and the volume to tmp_path.
    port = unused_tcp_port_factory()
    env |= {
        f"{ENV_PREFIX}LISTEN_ADDRESS": f"127.0.0.1:{port}",
        f"{ENV_PREFIX}METRICS_LISTEN_ADDRESS": f"127.0.0.1:{unused_tcp_port_factory()}",
        f"{ENV_PREFIX}STATE_PATH": str(tmp_path / "state.db"),
        f"{ENV_PREFIX}CATALOGUE_PATH": str(DEPLOY / "catalogue.example.yaml"),
    }
    entrypoint = final(dockerfile, "ENTRYPOINT").exec_form()
    assert entrypoint[0] == "aep-flow-exporter"
    argv = [sys.executable, "-m", "exporter", *entrypoint[1:]]
    log = tmp_path / "exporter.log"
    exporter = Child(
        "exporter", argv, port=port, ready_path="/healthz", log_path=log, env=clean_environ(env)
    )
    exporter.spawn()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STARTUP_TIMEOUT
        while await run_healthcheck(dockerfile, env) != 0:
            assert exporter.process is not None
            assert exporter.process.poll() is None, exporter.log_tail()
            assert loop.time() < deadline, "not healthy in time:\n" + exporter.log_tail()
            await asyncio.sleep(0.1)
        grace = parse_duration(env.get(f"{ENV_PREFIX}SHUTDOWN_GRACE", "15s"))
        status = await asyncio.to_thread(exporter.terminate, grace + 5)
        assert status == 0, exporter.log_tail()
    finally:
        exporter.stop()
