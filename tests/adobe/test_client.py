"""AdobeClient over loopback HTTP: classification, limits, timeouts, no proxy, no redirects."""

from __future__ import annotations

import email.utils
import logging
import socket
import time

import aiohttp
import pytest

from exporter.adobe.client import (
    AdobeApi,
    AdobeClient,
    AdobeError,
    AdobeInvalidResponse,
    AdobeNetworkError,
    AdobeNotFound,
    AdobeServerError,
    AdobeThrottled,
    AdobeUnauthorized,
    AdobeUnexpectedStatus,
    RequestResult,
    classify_status,
    retry_after_seconds,
)
from exporter.adobe.fake import DROP, HANG, Answer, FakeAdobe
from tests.adobe.conftest import MakeAdobeClient, WallClock
from tests.support import log_text

FLOWS = AdobeApi.FLOW_SERVICE
Counted = list[tuple[AdobeApi, RequestResult]]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def flows_url(fake: FakeAdobe) -> str:
    """The Flow Service list endpoint of the fake."""
    return fake.flow_service_url + "/flows"


async def test_ok_answer_is_decoded_and_counted_once(
    fake: FakeAdobe, adobe_client: AdobeClient, counted: Counted
) -> None:
    """A 200 JSON answer is decoded and counted once as ok."""
    fake.script("flows", Answer.json(200, {"items": [{"id": "f1"}], "_links": {}}))
    response = await adobe_client.request(FLOWS, "GET", flows_url(fake))
    assert response.status == 200
    assert response.data == {"items": [{"id": "f1"}], "_links": {}}
    assert counted == [(FLOWS, RequestResult.OK)]


@pytest.mark.parametrize(
    ("status", "result", "error"),
    [
        (401, RequestResult.UNAUTHORIZED, AdobeUnauthorized),
        (403, RequestResult.UNAUTHORIZED, AdobeUnauthorized),
        (404, RequestResult.NOT_FOUND, AdobeNotFound),
        (429, RequestResult.THROTTLED, AdobeThrottled),
        (500, RequestResult.SERVER_ERROR, AdobeServerError),
        (503, RequestResult.SERVER_ERROR, AdobeServerError),
        (504, RequestResult.SERVER_ERROR, AdobeServerError),
        (400, RequestResult.INVALID, AdobeUnexpectedStatus),
        (410, RequestResult.INVALID, AdobeUnexpectedStatus),
        (302, RequestResult.INVALID, AdobeUnexpectedStatus),
    ],
)
async def test_error_statuses_raise_their_typed_error_and_count_their_result(
    fake: FakeAdobe,
    adobe_client: AdobeClient,
    counted: Counted,
    status: int,
    result: RequestResult,
    error: type[AdobeError],
) -> None:
    """Each non-2xx status raises its typed error, counted under its result label."""
    fake.script("flows", Answer(status, b'{"error_code":"E1"}', {"Location": "/elsewhere"}))
    with pytest.raises(error) as caught:
        await adobe_client.request(FLOWS, "GET", flows_url(fake))
    assert caught.value.status == status
    assert caught.value.result is result
    assert counted == [(FLOWS, result)]


async def test_no_content_is_ok_without_data(
    fake: FakeAdobe, adobe_client: AdobeClient, counted: Counted
) -> None:
    """A 204 is ok and carries no data."""
    fake.script("journal", Answer(204))
    response = await adobe_client.request(AdobeApi.JOURNAL, "GET", fake.journal_url)
    assert (response.status, response.data) == (204, None)
    assert counted == [(AdobeApi.JOURNAL, RequestResult.OK)]


async def test_redirects_are_not_followed(fake: FakeAdobe, adobe_client: AdobeClient) -> None:
    """A redirect is refused, not followed: the fake sees one request."""
    fake.script("flows", Answer(302, headers={"Location": fake.ims_url}))
    with pytest.raises(AdobeUnexpectedStatus, match="redirect refused"):
        await adobe_client.request(FLOWS, "GET", flows_url(fake))
    assert [request.route for request in fake.requests] == ["flows"]


async def test_error_message_names_adobe_error_code_not_the_body(
    fake: FakeAdobe, adobe_client: AdobeClient
) -> None:
    """An error's message names Adobe's error code and the path, never the body text."""
    fake.script("flows", Answer.json(401, {"error_code": "401013", "message": "leaky detail"}))
    with pytest.raises(AdobeUnauthorized) as caught:
        await adobe_client.request(FLOWS, "GET", flows_url(fake) + "?property=x==1")
    message = str(caught.value)
    assert "HTTP 401 (401013)" in message
    assert "/data/foundation/flowservice/flows" in message
    assert "leaky detail" not in message
    assert "property" not in message
    assert b"leaky detail" in caught.value.body


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (Answer(200, b"<html>maintenance</html>"), "not JSON"),
        (Answer(200, b"[" * 100_000 + b"]" * 100_000), "not JSON: nested too deep"),
        (Answer(200, b"x" * 300_000), "larger than 262144 bytes"),
        (Answer(200, b"x" * 300_000, chunked=True), "larger than 262144 bytes"),
    ],
    ids=["html", "deep", "declared-too-large", "streamed-too-large"],
)
async def test_bad_bodies_are_invalid(
    fake: FakeAdobe,
    make_adobe_client: MakeAdobeClient,
    counted: Counted,
    answer: Answer,
    reason: str,
) -> None:
    """A 2xx body that is not JSON, too deep, or over the size limit is counted invalid."""
    client = make_adobe_client(max_body_bytes=256 * 1024)
    fake.script("flows", answer)
    with pytest.raises(AdobeInvalidResponse, match=reason):
        await client.request(FLOWS, "GET", flows_url(fake))
    assert counted == [(FLOWS, RequestResult.INVALID)]


async def test_body_at_the_limit_is_accepted(
    fake: FakeAdobe, make_adobe_client: MakeAdobeClient
) -> None:
    """A body of exactly the limit is read in full."""
    client = make_adobe_client(max_body_bytes=1024)
    body = b'["' + b"x" * 1020 + b'"]'
    fake.script("flows", Answer(200, body, chunked=True))
    response = await client.request(FLOWS, "GET", flows_url(fake))
    assert response.body == body


async def test_check_turns_an_unexpected_shape_into_invalid(
    fake: FakeAdobe, adobe_client: AdobeClient, counted: Counted
) -> None:
    """A caller's shape check that finds a problem makes the answer invalid, not ok."""
    fake.script("flows", Answer.json(200, {"unexpected": True}))
    with pytest.raises(AdobeInvalidResponse, match="unexpected answer: no items"):
        await adobe_client.request(
            FLOWS,
            "GET",
            flows_url(fake),
            check=lambda data: None if "items" in data else "no items",
        )
    assert counted == [(FLOWS, RequestResult.INVALID)]


async def test_a_check_that_trips_over_the_shape_still_classifies(
    fake: FakeAdobe, adobe_client: AdobeClient, counted: Counted
) -> None:
    """A shape check raising on an unforeseen answer makes it invalid instead of crashing."""
    fake.script("flows", Answer.json(200, ["not", "an", "object"]))
    with pytest.raises(AdobeInvalidResponse, match=r"shape check failed \(TypeError\)"):
        await adobe_client.request(
            FLOWS, "GET", flows_url(fake), check=lambda data: data["items"] and None
        )
    assert counted == [(FLOWS, RequestResult.INVALID)]


async def test_dropped_connection_is_a_network_error(
    fake: FakeAdobe, adobe_client: AdobeClient, counted: Counted
) -> None:
    """A connection closed without an answer is counted network_error, once."""
    # aiohttp retries an idempotent request once when the connection drops (RFC 9112 §9.3.1).
    fake.script("flows", DROP, DROP)
    with pytest.raises(AdobeNetworkError):
        await adobe_client.request(FLOWS, "GET", flows_url(fake))
    assert counted == [(FLOWS, RequestResult.NETWORK_ERROR)]


async def test_refused_connection_is_a_network_error(
    adobe_client: AdobeClient, counted: Counted
) -> None:
    """A port nobody listens on is counted network_error."""
    with pytest.raises(AdobeNetworkError):
        await adobe_client.request(AdobeApi.IMS, "POST", f"http://127.0.0.1:{closed_port()}/x")
    assert counted == [(AdobeApi.IMS, RequestResult.NETWORK_ERROR)]


async def test_hanging_answer_times_out_as_network_error(
    fake: FakeAdobe, make_adobe_client: MakeAdobeClient, counted: Counted
) -> None:
    """An answer that never comes ends at the total timeout, counted network_error."""
    client = make_adobe_client(timeout=0.3)
    fake.script("registration", HANG)
    started = time.monotonic()
    with pytest.raises(AdobeNetworkError, match=r"no complete answer within 0.3s"):
        await client.request(
            AdobeApi.REGISTRATION, "GET", fake.base_url + "/events/1/2/3/registrations/4"
        )
    assert time.monotonic() - started < 2.0
    assert counted == [(AdobeApi.REGISTRATION, RequestResult.NETWORK_ERROR)]


async def test_slow_body_counts_against_the_same_timeout(
    fake: FakeAdobe, make_adobe_client: MakeAdobeClient
) -> None:
    """The timeout covers the whole exchange: a delayed answer past it is a network error."""
    client = make_adobe_client(timeout=0.2)
    fake.script("flows", Answer(200, b"{}", delay=0.5))
    with pytest.raises(AdobeNetworkError):
        await client.request(FLOWS, "GET", flows_url(fake))


async def test_no_proxy_is_taken_from_the_environment(
    fake: FakeAdobe, adobe_client: AdobeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP(S)_PROXY pointing at a dead port is ignored: the request still reaches the fake."""
    dead_proxy = f"http://127.0.0.1:{closed_port()}"
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, dead_proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    # The environment is effective: a session that trusts it cannot get through.
    async with aiohttp.ClientSession(trust_env=True) as trusting:
        with pytest.raises(aiohttp.ClientConnectionError):
            await trusting.get(flows_url(fake))
    fake.script("flows", Answer.json(200, {"items": []}))
    response = await adobe_client.request(FLOWS, "GET", flows_url(fake))
    assert response.data == {"items": []}
    assert len(fake.requests_to("flows")) == 1


async def test_cookies_are_never_sent_back(fake: FakeAdobe, adobe_client: AdobeClient) -> None:
    """A Set-Cookie from Adobe is not stored: the next request carries no Cookie."""
    fake.script(
        "flows",
        Answer(200, b"{}", {"Set-Cookie": "session=abc; Path=/"}),
        Answer(200, b"{}"),
    )
    await adobe_client.request(FLOWS, "GET", flows_url(fake))
    await adobe_client.request(FLOWS, "GET", flows_url(fake))
    assert "Cookie" not in fake.requests[1].headers


async def test_retry_after_is_exposed_on_throttling_and_on_responses(
    fake: FakeAdobe, adobe_client: AdobeClient, clock: WallClock
) -> None:
    """Retry-After as seconds or as an HTTP date is on the error and on a 204 response."""
    fake.script("flows", Answer.throttled("7"))
    with pytest.raises(AdobeThrottled) as caught:
        await adobe_client.request(FLOWS, "GET", flows_url(fake))
    assert caught.value.retry_after == 7
    fake.script("journal", Answer(204, headers={"Retry-After": http_date(clock.now + 30)}))
    response = await adobe_client.request(AdobeApi.JOURNAL, "GET", fake.journal_url)
    assert response.retry_after == 30


def http_date(timestamp: float) -> str:
    """An IMF-fixdate, as Retry-After may carry it."""
    return email.utils.formatdate(timestamp, usegmt=True)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        ("1.5", 1.5),
        (http_date(1_800_000_090), 90.0),
        # "-0000" parses to a naive datetime; it is GMT all the same.
        (email.utils.formatdate(1_800_000_060), 60.0),
        (http_date(1_700_000_000), 0.0),
        ("soon", None),
        ("-5", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_seconds_reads_both_forms(value: str | None, seconds: float | None) -> None:
    """Delta-seconds and HTTP dates are read; past dates give 0; anything else gives None."""
    assert retry_after_seconds(value, 1_800_000_000.0) == seconds


def test_every_status_class_maps_to_one_label() -> None:
    """Status classification covers every result label but network_error."""
    labels = {classify_status(status) for status in range(100, 600)}
    assert labels == set(RequestResult) - {RequestResult.NETWORK_ERROR}


async def test_links_are_resolved_against_the_request_url(
    fake: FakeAdobe, adobe_client: AdobeClient
) -> None:
    """Root-relative Link targets become absolute URLs on the host that was asked."""
    fake.script(
        "journal",
        Answer(200, b'{"events":[]}', {"Link": '</events-fast/x?since=moose:1>; rel="next"'}),
    )
    response = await adobe_client.request(AdobeApi.JOURNAL, "GET", fake.journal_url)
    assert str(response.links["next"]) == fake.base_url + "/events-fast/x?since=moose:1"


async def test_request_headers_never_reach_the_log(
    fake: FakeAdobe, adobe_client: AdobeClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The client's log lines name the path and result, never a header or the query."""
    caplog.set_level(logging.DEBUG, logger="exporter.adobe")
    fake.script("flows", Answer.json(401, {}))
    with pytest.raises(AdobeUnauthorized) as caught:
        await adobe_client.request(
            FLOWS,
            "GET",
            flows_url(fake) + "?position=secret-position",
            headers={"Authorization": "Bearer token-Q7w"},
        )
    logged = log_text(caplog.records)
    assert "result=unauthorized" in logged
    for text in (logged, str(caught.value), repr(caught.value)):
        assert "token-Q7w" not in text
        assert "secret-position" not in text
