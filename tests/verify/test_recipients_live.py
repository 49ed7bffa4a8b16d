"""Hostile senders on a real exporter process: no foreign document is counted or stored (§18.11)."""

from __future__ import annotations

import json
import sqlite3
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.payload_builders import run_object
from tests.support import ExporterProcess, Samples, free_port, run_tool
from tests.verify.conftest import KEY1_PATH, SigningKeys, signed_headers

OURS = "our-client-id"
THEIRS = "someone-elses-client-id"
SUCCESS = "sources_flow_run_success"


class Service:
    """A running exporter that trusts a pinned test key, and the key that signs for it."""

    def __init__(self, process: ExporterProcess, keys: SigningKeys, *, required: bool) -> None:
        self.process = process
        self.keys = keys
        self.required = required

    def deliver(self, document: Any) -> tuple[int, str]:
        """POST the document, signed as Adobe signs it; the status and body of the answer."""
        data = document if isinstance(document, bytes) else json.dumps(document).encode()
        headers = dict(signed_headers((self.keys.one.sign(data), KEY1_PATH)))
        request = urllib.request.Request(self.process.url + "/webhook", data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as refused:
            return refused.code, refused.read().decode()

    def metrics(self) -> Samples:
        """Every sample of /metrics."""
        return self.process.metrics()


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when absent)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def runs_of(samples: Samples, flow_id: str) -> float:
    """Every run counted for a flow, whatever its status."""
    return sum(
        sample
        for (name, labels), sample in samples.items()
        if name == "aep_flow_runs_total" and ("flow_id", flow_id) in labels
    )


def exporter(tmp: Path, keys: SigningKeys, *flags: str) -> ExporterProcess:
    """An exporter (not started) verifying signatures with the pinned test key only."""
    pinned = tmp / "pinned"
    pinned.mkdir(exist_ok=True)
    (pinned / KEY1_PATH.rsplit("/", 1)[1]).write_bytes(keys.one.public_pem)
    return ExporterProcess(
        tmp / "state.db",
        "--pinned-keys-dir", str(pinned),
        # Nothing listens there: a key that is not pinned is never fetched from Adobe.
        "--public-key-base-url", f"http://127.0.0.1:{free_port()}",
        *flags,
    )  # fmt: skip


@pytest.fixture(scope="module", params=["lenient", "required"])
def service(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    signing_keys: SigningKeys,
) -> Iterator[Service]:
    """One exporter per module with our client id; `required` adds --require-recipient."""
    required = request.param == "required"
    flags = ["--client-id", OURS] + (["--require-recipient"] if required else [])
    with exporter(tmp_path_factory.mktemp(request.param), signing_keys, *flags) as process:
        yield Service(process, signing_keys, required=required)


def run(flow_id: str, **extra: Any) -> dict[str, Any]:
    """A successful run of its own flow, with the given extra fields."""
    document = run_object(run_id=f"run-{flow_id}", flow_id=flow_id)
    document["header"] = {"_adobeio": {"eventCode": SUCCESS}}
    return {**document, **extra}


def message(payload: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """One message of the `messages` form (protocol notes §4.2 B)."""
    return {"_eventNotificationMeta": {"type": SUCCESS}, "value": payload, **extra}


def nested(depth: int, leaf: Any) -> Any:
    """`leaf` inside `depth` levels of objects."""
    for _ in range(depth):
        leaf = {"deeper": leaf}
    return leaf


def assert_refused(service: Service, document: Any, flow_id: str, reason: str) -> None:
    """The delivery gets 401 for `reason`; the flow is not counted and nothing is stored."""
    before = value(service.metrics(), "aep_exporter_requests_rejected_total", reason=reason)
    status, text = service.deliver(document)
    assert status == 401, text
    after = service.metrics()
    assert value(after, "aep_exporter_requests_rejected_total", reason=reason) == before + 1
    assert runs_of(after, flow_id) == 0
    assert value(after, "aep_exporter_dead_letters_stored") == 0


def test_an_envelope_naming_another_registration_is_refused_in_the_messages_form(
    service: Service,
) -> None:
    """Our id inside a message or its value never outweighs a foreign messages envelope."""
    for field in ("recipient_client_id", "recipientclientid"):
        flow = f"messages-{field}"
        inner = message(run(flow, **{field: OURS}), **{field: OURS})
        document = {field: THEIRS, "messages": [inner]}
        assert_refused(service, document, flow, "recipient_mismatch")


def test_a_foreign_id_in_a_message_or_payload_is_refused(service: Service) -> None:
    """Our envelope does not cover a foreign id inside a message or any inner payload."""
    ours = {"recipientclientid": OURS}
    cases = {
        "m": {**ours, "messages": [message(run("m"), recipient_client_id=THEIRS)]},
        "v": {**ours, "messages": [message(run("v", recipientclientid=THEIRS))]},
        "e": {**ours, "event_id": "e", "event": run("e", recipientclientid=THEIRS)},
        "d": {**ours, "specversion": "1.0", "data": run("d", recipient_client_id=THEIRS)},
    }
    for flow, document in cases.items():
        assert_refused(service, document, flow, "recipient_mismatch")


@pytest.mark.parametrize("foreign", ["recipientclientid", "recipient_client_id"])
@pytest.mark.parametrize("form", ["legacy", "messages"])
def test_both_field_names_are_read(service: Service, foreign: str, form: str) -> None:
    """With both names on the envelope, a foreign id under either one refuses the delivery."""
    flow = f"both-{foreign}-{form}"
    fields = {"recipientclientid": OURS, "recipient_client_id": OURS, foreign: THEIRS}
    payload: dict[str, Any] = {"event_id": flow, "event": run(flow)}
    if form == "messages":
        payload = {"messages": [message(run(flow))]}
    assert_refused(service, {**fields, **payload}, flow, "recipient_mismatch")


@pytest.mark.parametrize("place", ["event", "data", "value", "message"])
def test_an_inner_recipient_does_not_satisfy_require_recipient(
    service: Service, place: str
) -> None:
    """Only the envelope counts: our id inside the payload is a recipient missing."""
    flow = f"inner-{place}"
    documents: dict[str, dict[str, Any]] = {
        "event": {"event_id": flow, "event": run(flow, recipientclientid=OURS)},
        "data": {"specversion": "1.0", "type": SUCCESS, "data": run(flow, recipientclientid=OURS)},
        "value": {"messages": [message(run(flow, recipient_client_id=OURS))]},
        "message": {"messages": [message(run(flow), recipientclientid=OURS)]},
    }
    document = documents[place]
    if service.required:
        assert_refused(service, document, flow, "recipient_missing")
        return
    missing = value(service.metrics(), "aep_exporter_recipient_missing_total")
    status, text = service.deliver(document)
    assert status == 200, text
    after = service.metrics()
    assert runs_of(after, flow) == 1
    assert value(after, "aep_exporter_recipient_missing_total") == missing + 1


def test_our_envelope_satisfies_require_recipient(service: Service) -> None:
    """Our id on the envelope, in the messages form too, is accepted and not counted missing."""
    missing = value(service.metrics(), "aep_exporter_recipient_missing_total")
    documents = [
        {"recipientclientid": OURS, "event_id": "env-1", "event": run("env-1")},
        [{"recipient_client_id": OURS, "messages": [message(run("env-2"))]}],
    ]
    for document in documents:
        status, text = service.deliver(document)
        assert status == 200, text
    after = service.metrics()
    assert runs_of(after, "env-1") == runs_of(after, "env-2") == 1
    assert value(after, "aep_exporter_recipient_missing_total") == missing


FOREIGN_UNREADABLE = {
    "unknown shape": {"recipientclientid": THEIRS, "mystery": 1},
    "event is a list": {"recipient_client_id": THEIRS, "event_id": "l", "event": [run("l")]},
    "too deep": {"recipientclientid": THEIRS, "event_id": "d", "event": run("d", x=nested(80, 1))},
    "foreign id past the depth limit": {"event": nested(80, {"recipientclientid": THEIRS})},
}


@pytest.mark.parametrize("name", FOREIGN_UNREADABLE)
def test_a_foreign_document_we_cannot_read_is_refused_not_stored(
    service: Service, name: str
) -> None:
    """Shape, type and depth failures never turn a foreign document into a dead letter."""
    assert_refused(service, FOREIGN_UNREADABLE[name], name, "recipient_mismatch")


def test_a_foreign_body_that_is_not_json_is_refused(service: Service) -> None:
    """Even a body that does not parse is read for recipient ids first."""
    body = b'{"recipientclientid": "' + THEIRS.encode() + b'", "event": {"broken'
    assert_refused(service, body, "not-json", "recipient_mismatch")


def replay(state: Path, *flags: str) -> tuple[int, str]:
    """`dead-letters replay --all` as its own process; exit status and output."""
    program = [sys.executable, "-m", "exporter", "dead-letters", "replay", "--all"]
    done = run_tool([*program, "--state-path", str(state), *flags])
    return done.returncode, done.stdout + done.stderr


def stored_letters(state: Path) -> int:
    """How many dead letters the state file holds."""
    with sqlite3.connect(state) as db:
        return int(db.execute("SELECT count(*) FROM dead_letters").fetchone()[0])


def test_replay_refuses_a_foreign_dead_letter(tmp_path: Path, signing_keys: SigningKeys) -> None:
    """Letters stored before client ids were set are held to the live rules when replayed."""
    state = tmp_path / "state.db"
    # Stored while no client id was configured: too deep for depth 8 (so a dead letter), and
    # a document that was never understood, from a delivery naming another registration.
    too_deep = {
        "recipientclientid": THEIRS,
        "event_id": "deep",
        "event": run("deep", x=nested(12, 1)),
    }
    batch = [{"recipientclientid": THEIRS, "event_id": "a", "event": run("a")}, {"mystery": 1}]
    ours = {"recipientclientid": OURS, "event_id": "ours", "event": run("ours", x=nested(12, 1))}
    with exporter(tmp_path, signing_keys, "--max-json-depth", "8") as process:
        service = Service(process, signing_keys, required=False)
        for document in (too_deep, batch, ours):
            status, text = service.deliver(document)
            assert status == 200, text
        assert value(service.metrics(), "aep_exporter_dead_letters_stored") == 3
    status, output = replay(state, "--client-id", OURS)
    assert status == 1, output
    refused = [line for line in output.splitlines() if ": refused: recipient_mismatch" in line]
    assert len(refused) == 2, output
    assert sum(": recorded" in line for line in output.splitlines()) == 1, output
    # The refused letters stay (for purge); ours was recorded and left the dead letters.
    assert stored_letters(state) == 2
    with exporter(tmp_path, signing_keys, "--client-id", OURS) as again:
        samples = again.metrics()
        assert runs_of(samples, "deep") == 0
        assert runs_of(samples, "ours") == 1
