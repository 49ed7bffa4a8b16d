"""Hostile senders: what bombs, trickling bodies, forged key paths and password floods cost.

The four scenarios of issue 12 (tests/hostile.py), each against a fresh exporter process, with
the figure each target is about. The tests in tests/verify/test_hostile_senders.py assert the
same behaviour with generous bounds.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import bcrypt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests import hostile
from tests.benchmarks import harness
from tests.benchmarks.context import Context
from tests.benchmarks.corpus import KEY_PATH, delivery_document
from tests.benchmarks.report import Section, Table, ms, number
from tests.support import ExporterProcess

BOMBS = 20
TRICKLERS = 300
FORGED = 300
WRONG_PASSWORDS = 100
BCRYPT_COST = 10
BOMB_HEAD_START = 0.05  # the delivery goes out while the bombs are still arriving
_R = TypeVar("_R")


def _signed(ctx: Context, count: int) -> list[hostile.Delivery]:
    """`count` distinct deliveries signed with the pinned benchmark key."""
    private = serialization.load_pem_private_key(ctx.key.private_pem, password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    now_ms = int(time.time() * 1000)
    deliveries: list[hostile.Delivery] = []
    for n in range(count):
        body = json.dumps(delivery_document(n, now_ms)).encode()
        signature = base64.b64encode(private.sign(body, padding.PKCS1v15(), hashes.SHA256()))
        headers = {
            "Content-Type": "application/json",
            "x-adobe-digital-signature-1": signature.decode(),
            "x-adobe-public-key1-path": KEY_PATH,
        }
        deliveries.append((body, headers))
    return deliveries


async def _against(
    ctx: Context, name: str, flags: list[str], scenario: Callable[[ExporterProcess], Awaitable[_R]]
) -> tuple[_R, float]:
    """Run `scenario` against a fresh exporter: its result and the exporter's CPU seconds."""
    service = harness.exporter_process(ctx.scratch(name), ctx.key, name=name, flags=flags)
    await asyncio.to_thread(service.start)
    try:
        cpu = harness.cpu_seconds(service.pid)
        result = await scenario(service)
        return result, harness.cpu_seconds(service.pid) - cpu
    finally:
        await asyncio.to_thread(service.stop)


async def _measure(ctx: Context) -> list[list[str]]:
    legit = _signed(ctx, 5)
    rows: list[list[str]] = []

    async def bombs(service: ExporterProcess) -> hostile.BombFigures:
        return await hostile.bombs_beside_a_delivery(
            service.url, legit[0], bombs=BOMBS, head_start=BOMB_HEAD_START
        )

    figures, cpu = await _against(ctx, "bombs", [], bombs)
    refused = sum(answer.status == 413 for answer in figures.bombs)
    last_bomb = max(answer.seconds for answer in figures.bombs)
    rows += [
        [f"{BOMBS} gzip bombs of 1 GiB (1 MB each)", "signed delivery answered",
         f"{ms(figures.delivery.seconds)} ms ({figures.delivery.status})", "≤ 1 000 ms"],
        ["", "`/healthz` answered",
         f"{ms(figures.healthz.seconds)} ms ({figures.healthz.status})", "≤ 500 ms"],
        ["", "bombs refused 413; last answered; exporter CPU",
         f"{refused} of {BOMBS}; {ms(last_bomb)} ms; {cpu:.2f} s", "all"],
    ]  # fmt: skip

    async def trickle(service: ExporterProcess) -> list[hostile.Answer]:
        return await hostile.deliveries_beside_tricklers(
            service.url, service.port, legit, trickling=TRICKLERS
        )

    answers, _ = await _against(ctx, "trickle", [], trickle)
    ok = sum(200 <= answer.status < 300 for answer in answers)
    slowest = max(answer.seconds for answer in answers)
    rows.append(
        [f"{TRICKLERS} connections trickling bodies", "signed deliveries 2xx; slowest",
         f"{ok} of {len(answers)}; {ms(slowest)} ms", "5 of 5"]
    )  # fmt: skip

    async with hostile.CountingKeyHost() as key_host:

        async def forge(service: ExporterProcess) -> tuple[dict[int, int], float]:
            statuses, seconds = await hostile.forged_key_paths(
                service.url, legit[0][0], requests=FORGED
            )
            return dict(statuses), seconds

        flags = ["--public-key-base-url", key_host.base_url]
        (statuses, seconds), _ = await _against(ctx, "forged", flags, forge)
    answered = ", ".join(f"{count} x {status}" for status, count in sorted(statuses.items()))
    rows.append(
        [f"{FORGED} deliveries naming {2 * FORGED} made-up key paths, in {seconds:.1f} s",
         "key fetches; answers", f"{key_host.requests}; {answered}", "≤ 50; no 2xx"]
    )  # fmt: skip

    known, first = ("prometheus", "scrape-password"), ("grafana", "other-password")
    web_config = ctx.scratch("web-config") / "web.yml"
    users = "".join(
        f"  {user}: '{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(BCRYPT_COST)).decode()}'\n"
        for user, pw in (known, first)
    )
    web_config.write_text("basic_auth_users:\n" + users, encoding="utf-8")

    async def flood(service: ExporterProcess) -> hostile.AuthFloodFigures:
        return await hostile.auth_flood_beside_scrapes(
            service.url, known=known, first=first, attempts=WRONG_PASSWORDS
        )

    auth, _ = await _against(ctx, "auth", ["--web-config-file", str(web_config)], flood)
    slowest = max(answer.seconds for answer in auth.flood)
    rows += [
        [f"{WRONG_PASSWORDS} wrong passwords at once (bcrypt cost {BCRYPT_COST})",
         "another user's first login",
         f"{ms(auth.first_login.seconds)} ms ({auth.first_login.status})", "< scrape timeout"],
        ["", "the flooded user's cached login",
         f"{ms(auth.known_user.seconds)} ms ({auth.known_user.status})", "not delayed"],
        ["", "slowest wrong-password answer", f"{ms(slowest)} ms", "refused fast"],
    ]  # fmt: skip
    return rows


def run(ctx: Context) -> list[Section]:
    """Each scenario once, against its own exporter (defaults but the pinned key)."""
    started = time.perf_counter()
    rows = asyncio.run(_measure(ctx))
    ctx.note(f"hostile senders measured in {time.perf_counter() - started:.0f} s")
    table = Table(
        "Hostile senders: bombs, trickling bodies, forged key paths, password floods",
        ["attack", "figure", "measured", "target"],
        rows,
    )
    table.notes += [
        "One run of each scenario of tests/hostile.py against a fresh exporter with default "
        "limits on 127.0.0.1; the attack and the legitimate requests come from one client "
        f"process. Bombs: {number(BOMBS)} concurrent 1 MB gzip bodies (concatenated 64 MiB "
        f"members of zeros), the signed delivery and /healthz sent "
        f"{BOMB_HEAD_START * 1000:.0f} ms later. Trickling: "
        "each connection sends a delivery's head and one body byte, then stalls; 5 signed "
        "deliveries follow one by one. Forged: two made-up /prod/keys/… paths and random "
        "signatures per delivery, 50 at a time, against a key host that answers 404. Flood: "
        "distinct wrong passwords for the user that logged in before; the other user logs in "
        "for the first time 0.3 s later.",
    ]
    return [table]
