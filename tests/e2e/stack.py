"""The real programs on loopback: the exporter, Prometheus, Alertmanager and an alert receiver."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.support import (
    Child,
    ExporterProcess,
    alertmanager_process,
    free_port,
    http_json,
    require_tool,
    wait_for,
)

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "rules"
ALERTMANAGER_CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
CATALOGUE = REPO / "deploy" / "catalogue.example.yaml"
KEY_PATH = "/prod/keys/pub-key-e2e.pem"


class Receiver:
    """An Alertmanager webhook receiver on loopback that keeps every notification."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        received = self.notifications

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert in every notification received so far."""
        return [alert for note in list(self.notifications) for alert in note["alerts"]]

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


class Signer:
    """A throwaway RSA key pair standing in for Adobe's; the public half is pinned."""

    def __init__(self, pinned_dir: Path) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        pinned_dir.mkdir(parents=True, exist_ok=True)
        (pinned_dir / KEY_PATH.rsplit("/", 1)[1]).write_bytes(pem)

    def headers(self, body: bytes) -> dict[str, str]:
        """Adobe's signature headers for this exact body."""
        signature = self.key.sign(body, padding.PKCS1v15(), hashes.SHA256())
        return {
            "x-adobe-digital-signature-1": base64.b64encode(signature).decode(),
            "x-adobe-public-key1-path": KEY_PATH,
            "content-type": "application/json",
        }


class Stack:
    """Starts everything under one temporary directory; stop() ends only what it started."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.processes: list[Child] = []
        self.receiver = Receiver()
        self.signer = Signer(root / "pinned")
        self.exporter = ExporterProcess(
            root / "state.db",
            "--pinned-keys-dir", str(root / "pinned"),
            "--catalogue-path", str(CATALOGUE),
        )  # fmt: skip
        self.alertmanager_port = free_port()
        self.prometheus_port = free_port()
        self.prometheus_url = f"http://127.0.0.1:{self.prometheus_port}"

    def alertmanager_config(self) -> Path:
        """The shipped Alertmanager config, every receiver pointed at the test receiver.

        Grouping waits are shortened so the test is quick; routes and inhibitions are as shipped.
        """
        config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
        for receiver in config.get("receivers", []):
            for webhook in receiver.get("webhook_configs", []):
                webhook["url"] = self.receiver.url
        route = config["route"]
        route["group_wait"], route["group_interval"] = "1s", "1s"
        for child in route.get("routes", []):
            child.pop("group_wait", None)
            child.pop("group_interval", None)
        path = self.root / "alertmanager.yml"
        path.write_text(yaml.safe_dump(config))
        return path

    def prometheus_config(self) -> Path:
        """Scrape the exporter every second and evaluate the shipped rules every second."""
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES / "recording.yml"), str(RULES / "alerts.yml")],
            "alerting": {
                "alertmanagers": [
                    {"static_configs": [{"targets": [f"127.0.0.1:{self.alertmanager_port}"]}]}
                ]
            },
            "scrape_configs": [
                {
                    "job_name": "aep-flow-exporter",
                    "static_configs": [{"targets": [f"127.0.0.1:{self.exporter.port}"]}],
                }
            ],
        }
        path = self.root / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        return path

    def start(self) -> None:
        """Start the exporter, Alertmanager and Prometheus; wait until Prometheus scraped once."""
        prometheus = require_tool("prometheus")
        alertmanager = require_tool("prometheus-alertmanager")
        self.exporter.start()
        config = self.alertmanager_config()
        self.processes.append(
            alertmanager_process(alertmanager, config, self.root, self.alertmanager_port).spawn()
        )
        argv = [
            prometheus,
            f"--config.file={self.prometheus_config()}",
            f"--storage.tsdb.path={self.root / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
        ]
        log_path = self.root / "prometheus.log"
        prometheus_child = Child(
            "prometheus", argv, port=self.prometheus_port, ready_path="/-/ready", log_path=log_path
        )
        self.processes.append(prometheus_child.spawn())
        wait_for(lambda: self.query("up") == [1.0], "Prometheus to scrape the exporter", 60)

    def query(self, expr: str) -> list[float]:
        """Values of an instant query now."""
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        result = http_json(url)["data"]["result"]
        return [float(item["value"][1]) for item in result]

    def query_any(self, expr: str, *, instant: bool, window: float) -> int:
        """Number of series an instant or range query returns (range: the last `window` s)."""
        if instant:
            params = {"query": expr}
            url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode(params)
        else:
            now = time.time()
            params = {"query": expr, "start": str(now - window), "end": str(now), "step": "1"}
            url = f"{self.prometheus_url}/api/v1/query_range?" + urllib.parse.urlencode(params)
        document = http_json(url, timeout=20)
        assert document["status"] == "success", document
        return len(document["data"]["result"])

    def deliver(self, body: bytes) -> int:
        """POST a signed delivery to the exporter; the HTTP status."""
        request = urllib.request.Request(
            self.exporter.url + "/webhook", data=body, headers=self.signer.headers(body)
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)

    def stop(self) -> None:
        """Stop what this stack started, by PID."""
        for process in self.processes:
            process.stop()
        self.exporter.stop()
        self.receiver.close()

    def logs(self) -> str:
        """The tail of every log, for failure messages."""
        parts = []
        for path in sorted(self.root.glob("*.log")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)
