"""`make demo`: the exporter on loopback, verifying real signatures, fed the sample payloads.

A throwaway RSA key pair stands in for Adobe's: its public half is pinned, its private half signs
each sample exactly as Adobe I/O Events does (RSA-SHA256 over the raw body, protocol notes §1.3.1).
The loopback fake of Adobe's APIs (exporter.adobe.fake) stands in for IMS, Flow Service, the
journal and the registration, so flow names, sources, schedules, registration health and the pull
sources (journal, reconciliation) show without an Adobe account. Where Debian's prometheus and
prometheus-alertmanager are installed they are started too, with the shipped rules and
Alertmanager routes. The samples' times (from 2020 to 2023) are moved to just now in the bodies
posted, so the alerts that fire are the ones the README names, not staleness. Everything listens
on 127.0.0.1; Ctrl-C or SIGTERM stops every child by its PID and removes the temporary directory.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from exporter.adobe import fake_documents as documents
from exporter.adobe.fake import FakeAdobe
from exporter.adobe.fake_thread import FakeAdobeThread
from exporter.metrics import families as fam

KEY_PATH = "/prod/keys/pub-key-demo.pem"
SHOWN = tuple(name for f in (fam.RUNS, fam.RUN_ERRORS) for name in f.sample_names)
# What Flow Service and the registration add: shown for the flows it lists, and the registration.
ENRICHED = tuple(
    name
    for f in (fam.FLOW_INFO, fam.EXPECTED_INTERVAL, fam.FLOW_ENABLED)
    for name in f.sample_names
)
REGISTRATION = tuple(
    name for f in (fam.REGISTRATION_INFO, fam.REGISTRATION_HEALTHY) for name in f.sample_names
)
POLLED = fam.POLL_LAST_SUCCESS.name
# Every time field of the samples, in milliseconds, seconds or ISO-8601 text.
TIME_FIELDS = frozenset({
    "startedAtUTC", "completedAtUTC", "updatedAtUTC", "updatedAt", "createdAt", "resolvedAt",
    "time", "timestamp", "sentTime", "processStartTime", "transformedTime", "slaCreatedAt",
})  # fmt: skip
# Epoch values between these are seconds, above them milliseconds; below (0, -1) not times.
SECONDS_FROM, MILLISECONDS_FROM = 1e9, 1e11
NOTIFIED = fam.NOTIFICATIONS.sample_names[0]
WEB_ORDERS = "cf4fce79-8822-456d-8fce-798822556dc6"
LOYALTY = "7a3e4b1c-0000-4000-8000-0000000005f7"
SFTP_SPEC_ID = "bf367b0d-3d9b-4060-b67b-0d3d9bd06094"
HTTP_API_SPEC_ID = "bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb"


def _unit(value: Any) -> str | None:
    """How a time field's value counts: "ms", "s" or "iso"; None when it is not a usable time."""
    if isinstance(value, str) and not value.isdigit():
        try:
            datetime.fromisoformat(value)
        except ValueError:
            return None
        return "iso"
    number = float(value) if isinstance(value, str | int | float) else math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number < SECONDS_FROM:
        return None
    return "ms" if number >= MILLISECONDS_FROM else "s"


def _seconds(value: Any, unit: str) -> float:
    if unit == "iso":
        return datetime.fromisoformat(value).timestamp()
    return float(value) / (1000 if unit == "ms" else 1)


def _times(document: Any) -> list[tuple[str, float]]:
    """(unit, epoch seconds) of every time field, at any depth."""
    if isinstance(document, dict):
        found = [(k, _unit(v), v) for k, v in document.items() if k in TIME_FIELDS]
        own = [(unit, _seconds(v, unit)) for _, unit, v in found if unit is not None]
        return own + [t for v in document.values() for t in _times(v)]
    if isinstance(document, list):
        return [t for item in document for t in _times(item)]
    return []


def _shifted(value: Any, deltas: dict[str, float]) -> Any:
    """The value moved by its unit's offset, in its own unit and type."""
    unit = _unit(value)
    if unit is None:
        return value
    moved = _seconds(value, unit) + deltas[unit]
    if unit == "iso":
        return datetime.fromtimestamp(moved, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
    number = moved * (1000 if unit == "ms" else 1)
    return str(round(number)) if isinstance(value, str) else type(value)(number)


def _moved(document: Any, deltas: dict[str, float]) -> Any:
    if isinstance(document, dict):
        return {
            k: _shifted(v, deltas) if k in TIME_FIELDS else _moved(v, deltas)
            for k, v in document.items()
        }
    if isinstance(document, list):
        return [_moved(item, deltas) for item in document]
    return document


def _retimed_document(document: Any, newest: float) -> Any:
    # One offset per unit: Adobe's samples mix clocks (a run in seconds from May, its envelope
    # in milliseconds from August), and each unit's newest time becomes `newest`.
    deltas: dict[str, float] = {}
    for unit, seconds in _times(document):
        deltas[unit] = max(deltas.get(unit, -math.inf), seconds)
    return _moved(document, {unit: newest - latest for unit, latest in deltas.items()})


def retimed(body: bytes, newest: float) -> bytes:
    """The body with its times moved so each document's newest time is `newest`, durations
    inside a document kept; a body that is not JSON is unchanged."""
    try:
        document = json.loads(body)
    except ValueError:
        return body
    if isinstance(document, list):  # a batch: each document of its own era
        return json.dumps([_retimed_document(item, newest) for item in document]).encode()
    return json.dumps(_retimed_document(document, newest)).encode()


def _get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback only
        return bytes(response.read())


def _wait_ready(url: str, process: subprocess.Popen[bytes], limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the exporter exited; see the log above")
        try:
            _get(url + "/readyz")
        except OSError:
            time.sleep(0.1)
            continue
        return
    raise SystemExit(f"the exporter was not ready within {limit:g}s")


def _post_signed(url: str, key: rsa.RSAPrivateKey, body: bytes) -> str:
    signature = base64.b64encode(key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()
    request = urllib.request.Request(  # noqa: S310 - loopback only
        url,
        data=body,
        headers={
            "content-type": "application/json",
            "x-adobe-digital-signature-1": signature,
            "x-adobe-public-key1-path": KEY_PATH,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return f"{response.status} {json.loads(response.read())['documents']}"
    except urllib.error.HTTPError as exc:
        return f"{exc.code} {exc.read().decode().strip()}"


def _start_monitoring(
    work: Path, repo: Path, exporter_port: int, ports: tuple[int, int]
) -> list[subprocess.Popen[bytes]]:
    prometheus, alertmanager = shutil.which("prometheus"), shutil.which("prometheus-alertmanager")
    if prometheus is None or alertmanager is None:
        print(
            "Prometheus/Alertmanager not installed: skipping them (Debian: prometheus, "
            "prometheus-alertmanager)."
        )
        return []
    config = yaml.safe_load((repo / "deploy/prometheus/prometheus.yml").read_text())
    config["global"].update(scrape_interval="5s", evaluation_interval="5s")
    config["rule_files"] = [
        str(p) for p in sorted((repo / "deploy/prometheus/rules").glob("*.yml"))
    ]
    prometheus_port, alertmanager_port = ports
    alertmanagers = [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]
    config["alerting"]["alertmanagers"][0]["static_configs"] = alertmanagers
    config["scrape_configs"] = [
        {"job_name": "aep-flow-exporter",
         "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]}
    ]  # fmt: skip
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    processes = []
    with (work / "monitoring.log").open("ab") as log:
        processes.append(subprocess.Popen(  # noqa: S603 - fixed arguments
            [prometheus, f"--config.file={work / 'prometheus.yml'}",
             f"--storage.tsdb.path={work / 'prometheus-data'}",
             f"--web.listen-address=127.0.0.1:{prometheus_port}"],
            stdout=log, stderr=log,
        ))  # fmt: skip
        processes.append(subprocess.Popen(  # noqa: S603 - fixed arguments
            [alertmanager, f"--config.file={repo / 'deploy/alertmanager/alertmanager.yml'}",
             f"--storage.path={work / 'alertmanager-data'}",
             f"--web.listen-address=127.0.0.1:{alertmanager_port}", "--cluster.listen-address="],
            stdout=log, stderr=log,
        ))  # fmt: skip
    print(f"Prometheus:   http://127.0.0.1:{prometheus_port}/alerts  (shipped rules, every 5 s)")
    print(f"Alertmanager: http://127.0.0.1:{alertmanager_port}")
    return processes


def _demo_adobe() -> FakeAdobe:
    """The fake with a few prod flows (two of them catalogued), a verified registration, and
    Flow Service runs of web-orders that no notification brings (reconciliation finds them)."""
    fake = FakeAdobe()
    fake.journal_retry_after = "2"
    hour_ago = int((time.time() - 3600) * 1000)
    missed = documents.run(
        "demo-run-no-notification", WEB_ORDERS, started_ms=hour_ago, completed_ms=hour_ago + 60_000
    )
    running = documents.run(
        "demo-run-in-progress", WEB_ORDERS, status="inProgress", completed_ms=None
    )
    fake.runs["prod"] = [missed, running]
    last_run = {"id": "demo-run-in-progress", "state": "inProgress", "startedAtUTC": hour_ago}
    streaming = documents.flow(
        "5e1d7a0c-0000-4000-8000-00000000c11c",
        name="Clickstream (HTTP API)",
        source_spec_id=HTTP_API_SPEC_ID,
        frequency=None,
    )
    fake.flows["prod"] = [
        documents.flow("1c6f1047-dcaf-48fe-af10-47dcaf08feaf", name="crm-accounts-s3"),
        documents.flow(WEB_ORDERS, name="web-orders", frequency="day", last_run=last_run),
        documents.flow(LOYALTY, name="Loyalty members (SFTP)",
                       source_spec_id=SFTP_SPEC_ID, frequency="minute", interval="15"),
        documents.flow("9b8c7d6e-0000-4000-8000-0000000000d1", name="Legacy export",
                       state="disabled", frequency="week"),
        streaming,
    ]  # fmt: skip
    for spec_id, name in (
        (documents.S3_SPEC_ID, "Amazon S3"),
        (SFTP_SPEC_ID, "SFTP"),
        (HTTP_API_SPEC_ID, "HTTP API"),
    ):
        fake.connection_specs[spec_id] = documents.connection_spec(spec_id, name)
    return fake


def _adobe_environment(fake: FakeAdobe) -> dict[str, str]:
    # In the environment, not the command line: the secret never shows in `ps`.
    return {
        **fake.exporter_settings(),
        "AEP_EXPORTER_SANDBOXES": "prod",
        "AEP_EXPORTER_FLOW_REFRESH_INTERVAL": "10s",
        "AEP_EXPORTER_RECONCILE_INTERVAL": "10s",
        "AEP_EXPORTER_JOURNAL_URL": fake.journal_url,
        "AEP_EXPORTER_JOURNAL_START": "latest",
        "AEP_EXPORTER_REGISTRATION_URL": fake.add_registration(documents.registration()),
        "AEP_EXPORTER_REGISTRATION_POLL_INTERVAL": "10s",
    }


def _journal_events(samples: Path) -> list[dict[str, object]]:
    """What the journal holds after the webhook deliveries: one sample again (a duplicate the
    de-duplication absorbs) and a run only the journal brings."""
    again = json.loads((samples / "seed_success.json").read_bytes())
    completed = int((time.time() - 1200) * 1000)
    only_journal = documents.run("demo-run-journal-only", LOYALTY, completed_ms=completed)
    only_journal["header"] = {"_adobeio": {"eventCode": "sources_flow_run_success"}}
    return [again, {"event_id": "demo-journal-event", "event": only_journal}]


def _wait_polled(url: str, limit: float = 15.0) -> str:
    """/metrics once every Adobe poller succeeded and the journal brought both its events (or
    the limit passed)."""
    deadline = time.monotonic() + limit
    tasks = ("flows", "registration", "journal", "reconcile")
    journal = f'{NOTIFIED}{{kind="run",outcome="%s",source="journal"}} 1.0'
    while True:
        text = _get(url + "/metrics").decode()
        done = [f'{POLLED}{{task="{task}"}}' in text for task in tasks]
        done += [journal % outcome in text for outcome in ("recorded", "duplicate")]
        if all(done) or time.monotonic() > deadline:
            return text
        time.sleep(0.2)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM ends the demo as Ctrl-C does: through the cleanup in `main`."""
    raise KeyboardInterrupt


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each child by its PID; SIGKILL to any still running after 20 s."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> int:
    """Run the demo; with --once, feed, print and stop."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, default=Path("tests/fixtures"))
    parser.add_argument("--port", type=int, default=9477)
    parser.add_argument("--once", action="store_true", help="stop after feeding and printing")
    parser.add_argument("--no-monitoring", action="store_true", help="exporter only")
    parser.add_argument("--prometheus-port", type=int, default=9090)
    parser.add_argument("--alertmanager-port", type=int, default=9093)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    work = Path(tempfile.mkdtemp(prefix="aep-flow-exporter-demo-"))
    processes: list[subprocess.Popen[bytes]] = []
    adobe: FakeAdobeThread | None = None
    try:
        adobe = FakeAdobeThread(_demo_adobe()).start()
        return _run(args, work, adobe, processes)
    except KeyboardInterrupt:
        return 0
    finally:
        # Ignored from here on: a second Ctrl-C or SIGTERM must not cut the cleanup short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _stop(processes)
        if adobe is not None:
            adobe.stop()
        shutil.rmtree(work, ignore_errors=True)


def _run(
    args: argparse.Namespace,
    work: Path,
    adobe: FakeAdobeThread,
    processes: list[subprocess.Popen[bytes]],
) -> int:
    """Start the exporter (and monitoring), feed the samples, print; children go to `processes`."""
    repo = Path(__file__).resolve().parents[1]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (work / "pinned").mkdir()
    (work / "pinned" / KEY_PATH.rsplit("/", 1)[1]).write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    url = f"http://127.0.0.1:{args.port}"
    # Only the demo's own settings: none of the caller's AEP_EXPORTER_* variables.
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AEP_EXPORTER_")}
    exporter = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "exporter", "serve",
         "--listen-address", f"127.0.0.1:{args.port}",
         "--state-path", str(work / "state.db"),
         "--pinned-keys-dir", str(work / "pinned"),
         "--catalogue-path", str(repo / "deploy/catalogue.example.yaml"),
         "--log-format", "logfmt", "--log-level", "WARNING"],
        env=environment | _adobe_environment(adobe.fake),
    )  # fmt: skip
    processes.append(exporter)
    _wait_ready(url, exporter)
    print(f"\nexporter on {url} (signature verification on; state in {work})")
    print(f"fake Adobe APIs (IMS, Flow Service, journal, registration) on {adobe.fake.base_url}\n")
    samples = sorted(args.samples.glob("*.json"))
    now = time.time()
    for number, sample in enumerate(samples):
        # One second apart, in posting order: the later sample is the newer run.
        newest = now - 60 + number
        result = _post_signed(url + "/webhook", key, retimed(sample.read_bytes(), newest))
        print(f"  {sample.name:<34} {result}")
    adobe.fake.add_journal_events(*_journal_events(args.samples))
    print(f"\nsome of {url}/metrics:")
    metrics = _wait_polled(url).splitlines()
    for line in metrics:
        if line.startswith(SHOWN) and 'flow_id="1c6f1047' in line:
            print("  " + line)
    print("\nnames, sources, schedules and states from (fake) Flow Service, the catalogue")
    print("winning where it names a value, and the registration's health:")
    listed = tuple(f'flow_id="{flow["id"]}"' for flow in adobe.fake.flows["prod"])
    for line in metrics:
        enriched = line.startswith(ENRICHED) and any(flow in line for flow in listed)
        if enriched or line.startswith(REGISTRATION):
            print("  " + line)
    print("\nnotifications by source: the webhook's, the journal's (one of them again: a")
    print("duplicate, counted once) and reconciliation's run that no notification brought:")
    for line in metrics:
        if line.startswith(NOTIFIED) and 'kind="run"' in line and not line.endswith(" 0.0"):
            print("  " + line)
    if not args.no_monitoring:
        ports = (args.prometheus_port, args.alertmanager_port)
        processes += _start_monitoring(work, repo, args.port, ports)
    print("\nchildren: " + " ".join(str(process.pid) for process in processes), flush=True)
    print(f"Try: aep-flow-exporter check-payload {args.samples / 'seed_failure.json'}")
    if args.once:
        return 0
    print("Ctrl-C stops everything.", flush=True)
    while exporter.poll() is None:
        time.sleep(1)
    return 1  # the exporter stopped by itself


if __name__ == "__main__":
    sys.exit(main())
