"""Unauthenticated senders cannot make a real exporter process stall or amplify (issue 12).

Each test runs `aep-flow-exporter serve` on loopback, attacks it with a bounded scenario from
tests/hostile.py and asserts generous bounds (the machine is a loaded 2-core one); the benchmark
`python -m tests.benchmarks hostile` prints the real figures against the targets.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import bcrypt
import pytest

from tests import hostile
from tests.conftest import fixture_bytes
from tests.support import ExporterProcess
from tests.verify.conftest import SigningKeys

SEED = fixture_bytes("seed_success.json")
PINNED_NAME = "pub-key-pinned.pem"


@pytest.fixture
def pinned(tmp_path: Path, signing_keys: SigningKeys) -> Path:
    """A pinned-keys directory holding key one's public half."""
    directory = tmp_path / "pinned"
    directory.mkdir()
    (directory / PINNED_NAME).write_bytes(signing_keys.one.public_pem)
    return directory


def signed(signing_keys: SigningKeys, body: bytes = SEED) -> hostile.Delivery:
    """A delivery signed by key one under its pinned path."""
    return body, {
        "Content-Type": "application/json",
        "x-adobe-digital-signature-1": signing_keys.one.sign(body),
        "x-adobe-public-key1-path": f"/prod/keys/{PINNED_NAME}",
    }


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, pinned: Path, *flags: str) -> AsyncIterator[ExporterProcess]:
    """The exporter with the pinned key and `flags`, started and stopped by its PID."""
    service = ExporterProcess(tmp_path / "state.db", "--pinned-keys-dir", str(pinned), *flags)
    await asyncio.to_thread(service.start)
    try:
        yield service
    finally:
        await asyncio.to_thread(service.stop)


async def test_gzip_bombs_stall_neither_a_delivery_nor_the_probes(
    tmp_path: Path, pinned: Path, signing_keys: SigningKeys
) -> None:
    """20 gzip bombs of 1 GiB each get 413 while a signed delivery and /healthz stay prompt."""
    async with serving(tmp_path, pinned) as service:
        figures = await hostile.bombs_beside_a_delivery(service.url, signed(signing_keys))
    assert [answer.status for answer in figures.bombs] == [413] * 20
    assert figures.delivery.status == 200
    assert figures.delivery.seconds < 3.0, figures.delivery  # target 1 s
    assert figures.healthz.status == 200
    assert figures.healthz.seconds < 1.5, figures.healthz  # target 0.5 s


async def test_trickling_senders_do_not_take_the_slots_of_deliveries(
    tmp_path: Path, pinned: Path, signing_keys: SigningKeys
) -> None:
    """With 300 connections stalling their bodies, 5 of 5 signed deliveries get 200."""
    async with serving(tmp_path, pinned) as service:
        answers = await hostile.deliveries_beside_tricklers(
            service.url, service.port, [signed(signing_keys)] * 5
        )
    assert [answer.status for answer in answers] == [200] * 5, answers
    assert max(answer.seconds for answer in answers) < 3.0, answers


async def test_forged_key_paths_cause_a_bounded_number_of_fetches(
    tmp_path: Path, pinned: Path, signing_keys: SigningKeys
) -> None:
    """300 deliveries naming 600 made-up key paths cause few key fetches and never a 2xx."""
    async with hostile.CountingKeyHost() as key_host:
        flags = ("--public-key-base-url", key_host.base_url)
        async with serving(tmp_path, pinned, *flags) as service:
            statuses, _ = await hostile.forged_key_paths(service.url, SEED)
            # Pinned keys are not held back by the flood of unknown ones.
            body, headers = signed(signing_keys)
            async with hostile.session() as client:
                url = service.url + "/webhook"
                answer = await hostile.timed(client, "POST", url, data=body, headers=headers)
    assert key_host.requests <= 50, key_host.requests  # target: at most 50 (it was 600)
    assert sum(statuses.values()) == 300
    assert set(statuses) <= {401, 503}, statuses
    assert answer.status == 200


async def test_a_wrong_password_flood_delays_no_login(tmp_path: Path, pinned: Path) -> None:
    """100 wrong passwords at once are refused fast; a first login and a known one stay prompt."""
    known, first = ("prometheus", "scrape-password"), ("grafana", "other-password")
    users = "".join(
        f"  {user}: '{bcrypt.hashpw(password.encode(), bcrypt.gensalt(10)).decode()}'\n"
        for user, password in (known, first)
    )
    web_config = tmp_path / "web.yml"
    web_config.write_text("basic_auth_users:\n" + users, encoding="utf-8")
    async with serving(tmp_path, pinned, "--web-config-file", str(web_config)) as service:
        figures = await hostile.auth_flood_beside_scrapes(service.url, known=known, first=first)
    assert {answer.status for answer in figures.flood} == {401}
    assert max(answer.seconds for answer in figures.flood) < 3.0  # it was 100 bcrypts: 6 s
    assert figures.first_login.status == 200
    assert figures.first_login.seconds < 3.0, figures.first_login
    assert figures.known_user.status == 200
    assert figures.known_user.seconds < 1.5, figures.known_user
