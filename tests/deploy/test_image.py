"""The image built from deploy/Dockerfile and run: version, user, probes, split port, health check.

Slow (a build takes one to three minutes), so not part of `make test`: `make image-check` sets
AEP_IMAGE_CHECK=1 and `.ci/run` runs it after `make test`. Elsewhere it is skipped with a reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import free_port, http_ok, require_tool, run_tool, wait_for

REPO = Path(__file__).resolve().parents[2]
TAG = "localhost/aep-flow-exporter:image-check"
BUILD_TIMEOUT = 900.0
READY_TIMEOUT = 60.0
# This machine's kernel refuses raising RLIMIT_NPROC/NOFILE to podman's defaults and mounts
# cgroups in hybrid mode, which crun refuses: runc with limits below the current ones runs.
RUN_OPTIONS = ("--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def _podman(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return run_tool(["podman", *args], timeout=timeout)


@pytest.fixture(scope="module")
def image() -> str:
    """The image, built by `deploy/build-image` with podman."""
    if os.environ.get("AEP_IMAGE_CHECK") != "1":
        pytest.skip("the image check is slow: run `make image-check` (AEP_IMAGE_CHECK=1)")
    require_tool("podman")
    require_tool("runc")
    built = run_tool([str(REPO / "deploy/build-image"), TAG], timeout=BUILD_TIMEOUT)
    assert built.returncode == 0, built.stdout + built.stderr
    return TAG


def test_the_image_has_the_oci_labels_and_keeps_its_health_check(image: str) -> None:
    """The labels name the source, version, revision and licence; HEALTHCHECK survived the
    build (docker format)."""
    inspected = _podman("image", "inspect", image)
    assert inspected.returncode == 0, inspected.stderr
    config = json.loads(inspected.stdout)[0]
    labels = config["Labels"]
    head = run_tool(["git", "-C", str(REPO), "rev-parse", "HEAD"]).stdout.strip()
    assert labels["org.opencontainers.image.revision"].startswith(head)
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert config["Healthcheck"]["Test"][:2] == ["CMD", "python"]


def test_the_image_prints_its_version_as_a_non_root_user(image: str) -> None:
    """--version answers; the process runs as UID and GID 65532."""
    version = _podman("run", "--rm", *RUN_OPTIONS, "--entrypoint", "aep-flow-exporter", image,
                      "--version")  # fmt: skip
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == "aep-flow-exporter 0.1.0"
    user = _podman("run", "--rm", *RUN_OPTIONS, "--entrypoint", "id", image)
    assert user.stdout.split()[:2] == ["uid=65532(aep)", "gid=65532(aep)"]


@pytest.fixture
def running(image: str) -> Iterator[tuple[str, int, int]]:
    """The image serving, on the host's loopback (host network), with its own listeners."""
    webhook, metrics = free_port(), free_port()
    name = f"aep-image-check-{webhook}"
    started = _podman(
        "run", "--detach", "--name", name, *RUN_OPTIONS, "--network", "host",
        "--health-interval", "disable",
        "--env", f"AEP_EXPORTER_LISTEN_ADDRESS=127.0.0.1:{webhook}",
        "--env", f"AEP_EXPORTER_METRICS_LISTEN_ADDRESS=127.0.0.1:{metrics}",
        "--env", "AEP_EXPORTER_INSECURE_ACCEPT_UNSIGNED=true",
        image,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        yield name, webhook, metrics
    finally:
        _podman("stop", "--time", "20", name, timeout=60)
        _podman("rm", "--force", name)


def test_the_image_serves_readyz_and_metrics_on_the_split_port_and_is_healthy(
    running: tuple[str, int, int],
) -> None:
    """/readyz answers on the webhook port, /metrics only on the metrics port, and the image's
    own health check passes; SIGTERM stops it with status 0."""
    name, webhook, metrics = running
    wait_for(lambda: http_ok(f"http://127.0.0.1:{webhook}/readyz"), "readyz", READY_TIMEOUT)
    assert _status(f"http://127.0.0.1:{metrics}/metrics") == 200
    assert _status(f"http://127.0.0.1:{webhook}/metrics") == 404
    health = _podman("healthcheck", "run", name)
    assert health.returncode == 0, health.stdout + health.stderr
    stopped = _podman("stop", "--time", "20", name, timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    status = _podman("inspect", name, "--format", "{{.State.ExitCode}}")
    assert status.stdout.strip() == "0"
