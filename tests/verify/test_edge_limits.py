"""The webhook's resource limits over real HTTP: slow bodies, the body and in-flight bounds, any
input."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
import zlib
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from exporter.service import Exporter
from tests.conftest import AppClient, MakeClient, fixture_bytes
from tests.verify.conftest import KEY1_PATH, KeyServer, OpenStalled, SigningKeys, signed_headers

SEED = fixture_bytes("seed_success.json")
SEED_FAILURE = fixture_bytes("seed_failure.json")
READ_TIMEOUT = 0.5
# Generous for one small delivery on a loaded CI machine, yet well inside READ_TIMEOUT's wait.
PROMPT = 0.4


def rejected(registry: CollectorRegistry, reason: str) -> float | None:
    """aep_exporter_requests_rejected_total for one reason."""
    return registry.get_sample_value("aep_exporter_requests_rejected_total", {"reason": reason})


async def until_in_flight(exporter: Exporter, count: int) -> None:
    """Wait (bounded) until the exporter verifies or records `count` deliveries."""
    async with asyncio.timeout(2.0):
        while exporter.webhook.in_flight != count:  # noqa: ASYNC110 - a plain counter, no event to await
            await asyncio.sleep(0.005)


async def until_receiving(exporter: Exporter, count: int) -> None:
    """Wait (bounded) until the exporter receives `count` bodies."""
    async with asyncio.timeout(2.0):
        while exporter.webhook.bodies.receiving != count:  # noqa: ASYNC110 - a plain counter
            await asyncio.sleep(0.005)


async def test_a_slow_body_times_out_without_delaying_others(
    make_client: MakeClient, open_stalled: OpenStalled
) -> None:
    """A stalled body gets 408 read_timeout after read_timeout; a delivery beside it is prompt."""
    client, registry, exporter = await make_client(read_timeout=READ_TIMEOUT)
    started = time.monotonic()
    stalled = await open_stalled(client)
    slow_status = asyncio.create_task(stalled.status())
    await until_receiving(exporter, 1)

    before = time.monotonic()
    response = await client.post("/webhook", data=SEED)
    assert response.status == 200, await response.text()
    assert time.monotonic() - before < PROMPT
    assert not slow_status.done()

    assert await slow_status == 408
    assert time.monotonic() - started >= READ_TIMEOUT
    assert rejected(registry, "read_timeout") == 1
    await until_receiving(exporter, 0)


async def test_deliveries_beyond_the_in_flight_bound_get_503(
    make_verified_client: MakeClient, key_server: KeyServer, signing_keys: SigningKeys
) -> None:
    """With max_in_flight=1 and one delivery waiting for its key, the next gets 503."""
    client, registry, exporter = await make_verified_client(max_in_flight=1)
    headers = signed_headers((signing_keys.one.sign(SEED), KEY1_PATH))
    key_server.mode = "slow"
    held = asyncio.create_task(client.post("/webhook", data=SEED, headers=headers))
    await until_in_flight(exporter, 1)

    response = await client.post("/webhook", data=SEED, headers=headers)
    assert response.status == 503
    assert response.headers["Retry-After"].isdigit()
    assert rejected(registry, "too_many_in_flight") == 1
    assert registry.get_sample_value("aep_exporter_tracked_flows") == 0

    # The key arrives and the held delivery frees its slot: the same delivery then goes through.
    key_server.release.set()
    assert (await held).status == 200
    await until_in_flight(exporter, 0)
    response = await client.post("/webhook", data=SEED, headers=headers)
    assert response.status == 200, await response.text()
    assert registry.get_sample_value("aep_exporter_tracked_flows") == 1


async def test_a_body_being_received_holds_no_in_flight_slot(
    make_client: MakeClient, open_stalled: OpenStalled
) -> None:
    """With max_in_flight=1, a stalled body does not keep another delivery out."""
    client, _, exporter = await make_client(max_in_flight=1, read_timeout=READ_TIMEOUT)
    stalled = await open_stalled(client)
    await until_receiving(exporter, 1)
    response = await client.post("/webhook", data=SEED)
    assert response.status == 200, await response.text()
    assert exporter.webhook.bodies.receiving == 1
    assert await stalled.status() == 408


async def test_when_every_body_slot_is_taken_the_stalest_body_is_dropped(
    make_client: MakeClient, open_stalled: OpenStalled
) -> None:
    """Beyond max_receiving, the body waiting longest for a byte gets 408; the new one is read."""
    client, registry, exporter = await make_client(max_receiving=2, read_timeout=5.0)
    oldest = await open_stalled(client)
    await until_receiving(exporter, 1)
    newer = await open_stalled(client)
    await until_receiving(exporter, 2)
    # The oldest sends a byte: the newer one has now waited longest for its next byte.
    await oldest.send(b" ")
    await asyncio.sleep(0.05)

    started = time.monotonic()
    response = await client.post("/webhook", data=SEED)
    assert response.status == 200, await response.text()
    assert await newer.status(bound=1.0) == 408
    assert time.monotonic() - started < 1.0  # dropped at once, not at the read timeout
    assert exporter.webhook.bodies.receiving == 1
    assert rejected(registry, "read_timeout") == 1


async def test_a_client_hanging_up_mid_body_frees_its_slot(
    make_client: MakeClient, open_stalled: OpenStalled
) -> None:
    """A sender that disconnects mid-body leaves no body being received and records nothing."""
    client, registry, exporter = await make_client(max_receiving=1, read_timeout=READ_TIMEOUT)
    stalled = await open_stalled(client)
    await until_receiving(exporter, 1)
    await stalled.close()
    await until_receiving(exporter, 0)
    response = await client.post("/webhook", data=SEED)
    assert response.status == 200, await response.text()
    assert registry.get_sample_value("aep_exporter_tracked_flows") == 1


async def test_every_delivery_is_timed(make_client: MakeClient) -> None:
    """The delivery duration histogram counts each POST, whatever its answer."""
    client, registry, _ = await make_client()
    name = "aep_exporter_delivery_duration_seconds_count"
    assert registry.get_sample_value(name) == 0
    for expected, body in enumerate((SEED, SEED, b"{not json", SEED_FAILURE), start=1):
        await client.post("/webhook", data=body)
        assert registry.get_sample_value(name) == expected
    # Challenges are not deliveries.
    await client.get("/webhook", params={"challenge": "x"})
    assert registry.get_sample_value(name) == 4


async def test_adobe_retries_are_counted(make_client: MakeClient) -> None:
    """Each delivery carrying x-adobe-retry-count counts once in delivery_retries_total."""
    client, registry, _ = await make_client()
    name = "aep_exporter_delivery_retries_total"
    await client.post("/webhook", data=SEED)
    assert registry.get_sample_value(name) == 0
    response = await client.post("/webhook", data=SEED, headers={"x-adobe-retry-count": "2"})
    assert response.status == 200
    assert registry.get_sample_value(name) == 1


async def test_a_compressed_body_is_limited_by_its_decoded_size(make_client: MakeClient) -> None:
    """A small gzip body that inflates past max_body_bytes gets 413 body_too_large."""
    client, registry, _ = await make_client(max_body_bytes=64 * 1024)
    bomb = gzip.compress(b" " * 4_000_000)
    assert len(bomb) < 8 * 1024
    response = await client.post("/webhook", data=bomb, headers={"Content-Encoding": "gzip"})
    assert response.status == 413
    assert rejected(registry, "body_too_large") == 1


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("GZIP", gzip.compress),
        ("gzip", lambda data: gzip.compress(data[:100]) + gzip.compress(data[100:])),
        ("deflate", zlib.compress),
        ("deflate", _raw_deflate),
        ("identity", lambda data: data),
    ],
    ids=["gzip", "upper-case", "gzip-members", "zlib", "raw-deflate", "identity"],
)
async def test_a_compressed_body_is_decoded_before_it_is_ingested(
    make_client: MakeClient, encoding: str, encode: Callable[[bytes], bytes]
) -> None:
    """Each Content-Encoding aiohttp decodes is decoded (concatenated gzip members too)."""
    client, registry, _ = await make_client()
    headers = {"Content-Encoding": encoding}
    response = await client.post("/webhook", data=encode(SEED), headers=headers)
    assert response.status == 200, await response.text()
    assert registry.get_sample_value("aep_exporter_tracked_flows") == 1


async def test_a_body_just_within_the_limit_decodes(make_client: MakeClient) -> None:
    """A gzip body that inflates to exactly max_body_bytes is read whole."""
    client, _, exporter = await make_client(max_body_bytes=64 * 1024)
    document = SEED + b" " * (64 * 1024 - len(SEED))
    headers = {"Content-Encoding": "gzip"}
    response = await client.post("/webhook", data=gzip.compress(document), headers=headers)
    assert response.status == 200, await response.text()
    assert exporter.webhook.bodies.receiving == 0


@pytest.mark.parametrize(
    ("encoding", "body"),
    [("gzip", gzip.compress(SEED)[:-12]), ("br", b"\x8b\x02\x80{}\x03"), ("zstd", b"(\xb5/\xfd")],
    ids=["truncated-gzip", "brotli", "zstd"],
)
async def test_a_body_in_a_coding_without_a_decoder_is_refused_with_400(
    make_client: MakeClient, encoding: str, body: bytes
) -> None:
    """A truncated stream, or a coding this service cannot decode, is a 400 invalid_json."""
    client, registry, _ = await make_client()
    response = await client.post("/webhook", data=body, headers={"Content-Encoding": encoding})
    assert response.status == 400
    assert rejected(registry, "invalid_json") == 1
    assert registry.get_sample_value("aep_exporter_tracked_flows") == 0


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_body_that_does_not_decode_is_refused_with_400(
    make_client: MakeClient, open_stalled: OpenStalled, encoding: str
) -> None:
    """A body its Content-Encoding cannot decode is a client error (400), never a 500."""
    client, registry, exporter = await make_client()
    garbage = b"this is not compressed"
    delivery = await open_stalled(
        client,
        content_length=len(garbage),
        first_bytes=b"",
        headers={"Content-Encoding": encoding},
    )
    # The body arrives once the handler is reading it, as it does when it is split over packets
    # (sent with the head, aiohttp's parser refused it with 400 before the handler ran).
    await until_receiving(exporter, 1)
    await delivery.send(garbage)
    assert await delivery.status() == 400
    assert rejected(registry, "invalid_json") == 1
    assert registry.get_sample_value("aep_exporter_tracked_flows") == 0


# -- any input -------------------------------------------------------------------------------

# Header values a client can send: Latin-1 without control characters (aiohttp's client refuses
# those before anything is sent).
_HEADER_CHARS = [chr(code) for code in range(0x20, 0x100) if not 0x7F <= code <= 0x9F]
_HEADER_VALUE = st.text(st.sampled_from(_HEADER_CHARS), max_size=40)
HEADERS = st.dictionaries(
    st.sampled_from(
        [
            "content-type",
            "content-encoding",
            "x-adobe-event-id",
            "x-adobe-retry-count",
            "x-adobe-digital-signature-1",
            "x-adobe-public-key1-path",
            "x-adobe-signature",
            "x-request-id",
        ]
    ),
    st.one_of(_HEADER_VALUE, st.sampled_from(["gzip", "deflate", "br", "identity", "1"])),
    max_size=4,
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["event_id", "event", "flowId", "metrics", "messages", "status", "x"]),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)
BODIES = st.one_of(
    st.binary(max_size=300),
    _JSON.map(lambda value: json.dumps(value).encode()),
    st.sampled_from([SEED, SEED_FAILURE, b"[" * 5000, b"\xef\xbb\xbf{}"]),
)


@settings(
    derandomize=True,
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=BODIES, headers=HEADERS)
async def test_no_body_or_header_gets_a_500(
    unsigned_client: tuple[AppClient, CollectorRegistry, Exporter],
    body: bytes,
    headers: dict[str, str],
) -> None:
    """Whatever bytes and headers arrive, the unsigned app answers without a 5xx."""
    client, _, _ = unsigned_client
    response = await client.post("/webhook", data=body, headers=headers)
    text = await response.text()
    assert response.status in {200, 400, 413}, (response.status, text)
    assert "Traceback" not in text
