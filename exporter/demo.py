"""`make demo`: the exporter on loopback, verifying real signatures, fed the sample payloads.

A throwaway RSA key pair stands in for Adobe's: its public half is pinned, its private half signs
each sample exactly as Adobe I/O Events does (RSA-SHA256 over the raw body, protocol notes §1.3.1).
Where Debian's prometheus and prometheus-alertmanager are installed they are started too, with
the shipped rules and Alertmanager routes. Everything listens on 127.0.0.1 and stops on Ctrl-C.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from exporter.metrics.families import FLOW_INFO, RUN_ERRORS, RUNS

KEY_PATH = "/prod/keys/pub-key-demo.pem"
SHOWN = tuple(name for family in (RUNS, RUN_ERRORS, FLOW_INFO) for name in family.sample_names)


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


def _start_monitoring(work: Path, repo: Path, exporter_port: int) -> list[subprocess.Popen[bytes]]:
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
    config["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": ["127.0.0.1:9093"]}]
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
             "--web.listen-address=127.0.0.1:9090"],
            stdout=log, stderr=log,
        ))  # fmt: skip
        processes.append(subprocess.Popen(  # noqa: S603 - fixed arguments
            [alertmanager, f"--config.file={repo / 'deploy/alertmanager/alertmanager.yml'}",
             f"--storage.path={work / 'alertmanager-data'}",
             "--web.listen-address=127.0.0.1:9093", "--cluster.listen-address="],
            stdout=log, stderr=log,
        ))  # fmt: skip
    print("Prometheus:   http://127.0.0.1:9090/alerts  (shipped rules, scraping every 5 s)")
    print("Alertmanager: http://127.0.0.1:9093")
    return processes


def main(argv: list[str] | None = None) -> int:
    """Run the demo; with --once, feed, print and stop."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, default=Path("tests/fixtures"))
    parser.add_argument("--port", type=int, default=9477)
    parser.add_argument("--once", action="store_true", help="stop after feeding and printing")
    parser.add_argument("--no-monitoring", action="store_true", help="exporter only")
    args = parser.parse_args(argv)
    repo = Path(__file__).resolve().parents[1]
    work = Path(tempfile.mkdtemp(prefix="aep-flow-exporter-demo-"))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (work / "pinned").mkdir()
    (work / "pinned" / KEY_PATH.rsplit("/", 1)[1]).write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    url = f"http://127.0.0.1:{args.port}"
    exporter = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "exporter", "serve",
         "--listen-address", f"127.0.0.1:{args.port}",
         "--state-path", str(work / "state.db"),
         "--pinned-keys-dir", str(work / "pinned"),
         "--catalogue-path", str(repo / "deploy/catalogue.example.yaml"),
         "--log-format", "logfmt", "--log-level", "WARNING"],
        # Only the demo's own settings: none of the caller's AEP_EXPORTER_* variables.
        env={k: v for k, v in os.environ.items() if not k.startswith("AEP_EXPORTER_")},
    )  # fmt: skip
    processes = [exporter]
    try:
        _wait_ready(url, exporter)
        print(f"\nexporter on {url} (signature verification on; state in {work})\n")
        for sample in sorted(args.samples.glob("*.json")):
            result = _post_signed(url + "/webhook", key, sample.read_bytes())
            print(f"  {sample.name:<34} {result}")
        print(f"\nsome of {url}/metrics:")
        for line in _get(url + "/metrics").decode().splitlines():
            if line.startswith(SHOWN) and 'flow_id="1c6f1047' in line:
                print("  " + line)
        if not args.no_monitoring:
            processes += _start_monitoring(work, repo, args.port)
        print(f"\nTry: aep-flow-exporter check-payload {args.samples / 'seed_failure.json'}")
        if args.once:
            return 0
        print("Ctrl-C stops everything.")
        while exporter.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        return 0
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=20)
    return 1  # the exporter stopped by itself


if __name__ == "__main__":
    sys.exit(main())
