"""Adobe-shaped notifications for the benchmarks, signed as Adobe signs them, in a file for wrk."""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

# Pinned keys are matched by the header path's last segment (exporter/keys.py).
KEY_PATH = "/prod/keys/pub-key-bench.pem"
SANDBOX = "prod"
ERROR_CODES = ("CONNECTOR-2001-500", "133", "INGEST-1212-400")
ACTIVITIES = ("copyActivity", "promotionActivity")
# Deliveries of the request file go to this many flows (fewer than any populated store holds).
DELIVERY_FLOWS = 1000
_SIGN_CHUNK = 2000


def flow_id(number: int) -> str:
    """A UUID-shaped flow id, distinct per number."""
    return f"be7c{number:04x}-{number >> 16:04x}-48fe-af10-47dcaf08feaf"


def _run(
    run_id: str, flow: int, *, completed_ms: int, duration_ms: int, failed: bool
) -> dict[str, Any]:
    """A Flow Service run object with every section the exporter reads (protocol notes §4.4)."""
    status: dict[str, Any] = {"status": "failed" if failed else "success"}
    if failed:
        status["errors"] = [
            {"code": code, "message": "Error in processing the copied data."}
            for code in ERROR_CODES
        ]
    return {
        "id": run_id,
        "createdAt": completed_ms - duration_ms - 5000,
        "updatedAt": completed_ms,
        "sandboxId": "efc198a4-af2e-4f5b-8198-a4af2e4f5b3a",
        "sandboxName": SANDBOX,
        "imsOrgId": "4E5F3EB95C746F890A49400A@AdobeOrg",
        "flowId": flow_id(flow),
        "flowName": f"Benchmark flow {flow}",
        "etag": '"760000d9-0000-0200-0000-64ffa2e90000"',
        "metrics": {
            "durationSummary": {
                "startedAtUTC": completed_ms - duration_ms,
                "completedAtUTC": completed_ms,
            },
            "sizeSummary": {"inputBytes": 52428800, "outputBytes": 41943040},
            "recordSummary": {"inputRecordCount": 250000, "outputRecordCount": 249000},
            "fileSummary": {"inputFileCount": 4, "outputFileCount": 4},
            "statusSummary": status,
        },
        "activities": [
            {"id": name, "statusSummary": {"status": "failed" if failed else "success"}}
            for name in ACTIVITIES
        ],
    }


def _cloud_event(event_id: str, code: str, data: dict[str, Any]) -> dict[str, Any]:
    """The CloudEvents 1.0 envelope Adobe I/O Events delivers (protocol notes §1.2)."""
    return {
        "specversion": "1.0",
        "type": code,
        "source": "urn:uuid:8fc3c7d5-5b5f-4c6e-9f0f-64d52bd1b7a2",
        "id": event_id,
        "time": "2026-01-01T00:00:00.000Z",
        "datacontenttype": "application/json",
        "eventid": event_id,
        "event_id": event_id,
        "data": data,
    }


def delivery_document(number: int, now_ms: int, *, prefix: str = "delivery") -> dict[str, Any]:
    """Notification `number` of the request file: a distinct run; every tenth one failed.

    Another `prefix` ("journal") gives the same documents under ids of their own.
    """
    failed = number % 10 == 0
    code = "sources_flow_run_failed" if failed else "sources_flow_run_success"
    run = _run(
        f"{prefix}-run-{number:08d}",
        number % DELIVERY_FLOWS,
        completed_ms=now_ms - 30_000,
        duration_ms=20_000 + (number % 50) * 1_000,
        failed=failed,
    )
    return _cloud_event(f"{prefix}-event-{number:08d}", code, run)


def flow_documents(flow: int, now_ms: int) -> list[dict[str, Any]]:
    """Documents giving one flow every series: a start, both outcomes, errors, alerts."""
    documents = []
    for k, failed in enumerate((False, False, True)):
        code = "sources_flow_run_failed" if failed else "sources_flow_run_success"
        run = _run(
            f"flow-{flow}-run-{k}",
            flow,
            completed_ms=now_ms - (3 - k) * 3_600_000,
            duration_ms=(k + 1) * 45_000,
            failed=failed,
        )
        documents.append(_cloud_event(f"flow-{flow}-event-{k}", code, run))
    start = _run(f"flow-{flow}-run-open", flow, completed_ms=now_ms, duration_ms=0, failed=False)
    start["metrics"]["statusSummary"] = {"status": "inProgress"}
    del start["metrics"]["durationSummary"]["completedAtUTC"]
    documents.append(_cloud_event(f"flow-{flow}-event-start", "source_flow_run_info", start))
    alerts = (
        ("sources_flow_run_delay_prod", "FIRING"),
        ("sources_flow_run_error_rate_prod", "INACTIVE"),
    )
    for name, status in alerts:
        alert: dict[str, Any] = {
            "id": f"flow-{flow}-alert-{name}",
            "status": status,
            "name": name,
            "createdAt": "2026-01-01T00:00:00.000Z",
            "sandboxName": SANDBOX,
            "flowId": flow_id(flow),
            "header": {"_adobeio": {"eventCode": "source_flow_run_error"}},
        }
        if status == "INACTIVE":
            alert["resolvedAt"] = "2026-01-01T01:00:00.000Z"
        documents.append(alert)
    return documents


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An RSA-2048 key pair standing in for Adobe's signing key, pinned in `pinned_dir`."""

    private_pem: bytes
    pinned_dir: Path

    @classmethod
    def create(cls, directory: Path) -> SigningKey:
        """Generate a key and write its public half where --pinned-keys-dir finds it."""
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        directory.mkdir(parents=True, exist_ok=True)
        public = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        (directory / KEY_PATH.rsplit("/", 1)[1]).write_bytes(public)
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cls(pem, directory)


def signed_request(private: rsa.RSAPrivateKey, body: bytes, event_id: str) -> bytes:
    """A raw HTTP/1.1 POST with the body and Adobe's signature headers (protocol notes §1.3.1)."""
    signature = base64.b64encode(private.sign(body, padding.PKCS1v15(), hashes.SHA256()))
    head = (
        "POST /webhook HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"x-adobe-digital-signature-1: {signature.decode()}\r\n"
        f"x-adobe-public-key1-path: {KEY_PATH}\r\n"
        f"x-adobe-event-id: {event_id}\r\n"
        "\r\n"
    )
    return head.encode() + body


def _sign_range(private_pem: bytes, start: int, stop: int, now_ms: int) -> bytes:
    """Records `start`..`stop` of the request file (runs in a worker process)."""
    private = serialization.load_pem_private_key(private_pem, password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    out = bytearray()
    for number in range(start, stop):
        document = delivery_document(number, now_ms)
        request = signed_request(private, json.dumps(document).encode(), document["id"])
        out += b"%d\n" % len(request) + request
    return bytes(out)


def write_request_file(key: SigningKey, path: Path, start: int, stop: int, now_ms: int) -> None:
    """Append deliveries `start`..`stop` as `<length>\\n<raw request>` records."""
    ranges = [(s, min(s + _SIGN_CHUNK, stop)) for s in range(start, stop, _SIGN_CHUNK)]
    context = multiprocessing.get_context("spawn")
    with (
        ProcessPoolExecutor(max_workers=os.cpu_count() or 1, mp_context=context) as pool,
        path.open("ab") as out,
    ):
        futures = [pool.submit(_sign_range, key.private_pem, a, b, now_ms) for a, b in ranges]
        for future in futures:
            out.write(future.result())
