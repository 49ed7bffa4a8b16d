"""The loopback fake keeps Adobe's documented behaviour: paging, journal answers, auth checks."""

from __future__ import annotations

import email.utils
from typing import Any

import pytest
from yarl import URL

from exporter.adobe import fake_documents as documents
from exporter.adobe.client import (
    AdobeApi,
    AdobeClient,
    AdobeNotFound,
    AdobeUnauthorized,
    AdobeUnexpectedStatus,
)
from exporter.adobe.fake import FakeAdobe
from exporter.adobe.ims import TokenProvider
from tests.adobe.conftest import WallClock

FLOWS = AdobeApi.FLOW_SERVICE
JOURNAL = AdobeApi.JOURNAL


async def list_all(
    fake: FakeAdobe, tokens: TokenProvider, path: str, filters: list[str], *, resend: bool = True
) -> list[dict[str, Any]]:
    """Every item of a Flow Service list, following `_links.next.href` page by page."""
    query = [("property", expression) for expression in filters]
    url = fake.flow_service_url + path
    params = query
    items: list[dict[str, Any]] = []
    while True:
        response = await tokens.request(FLOWS, "GET", url, sandbox="prod", params=params)
        items.extend(response.data["items"])
        href = response.data["_links"].get("next", {}).get("href")
        if not href:
            return items
        # Relative to the Flow Service base; the filters are re-sent (protocol notes §11.2).
        following = URL(href)
        url = fake.flow_service_url + following.path
        params = [*(query if resend else []), *following.query.items()]


@pytest.fixture
def flows(fake: FakeAdobe) -> list[dict[str, Any]]:
    """Five prod flows, three of them enabled, one dev flow."""
    fake.flows["prod"] = [
        documents.flow(f"f{n}", state="enabled" if n % 2 else "disabled") for n in range(1, 6)
    ]
    fake.flows["dev"] = [documents.flow("dev-flow", sandbox="dev")]
    return fake.flows["prod"]


@pytest.mark.usefixtures("flows")
async def test_flows_are_paged_by_continuation_token(
    fake: FakeAdobe, tokens: TokenProvider
) -> None:
    """GET /flows pages two at a time; next hrefs are relative and carry only the token."""
    listed = await list_all(fake, tokens, "/flows", [])
    assert [flow["id"] for flow in listed] == ["f1", "f2", "f3", "f4", "f5"]
    pages = fake.requests_to("flows")
    assert len(pages) == 3
    assert "continuationToken" not in pages[0].query
    assert all("continuationToken" in page.query for page in pages[1:])


@pytest.mark.usefixtures("flows")
async def test_filters_must_be_resent_with_each_page(
    fake: FakeAdobe, tokens: TokenProvider
) -> None:
    """Filters apply to each page as sent: a client that drops them gets unfiltered pages."""
    enabled = ["state==enabled"]
    assert [f["id"] for f in await list_all(fake, tokens, "/flows", enabled)] == ["f1", "f3", "f5"]
    dropped = await list_all(fake, tokens, "/flows", enabled, resend=False)
    # The second page continues at offset 2 of the unfiltered list: f3 again, then f4 (disabled).
    assert [f["id"] for f in dropped] == ["f1", "f3", "f3", "f4", "f5"]


@pytest.mark.usefixtures("flows")
async def test_flows_are_per_sandbox_and_one_flow_is_wrapped_in_items(
    fake: FakeAdobe, tokens: TokenProvider
) -> None:
    """GET /flows/{id} answers {"items": [flow]} in its sandbox and a 7807 404 elsewhere."""
    url = fake.flow_service_url + "/flows/dev-flow"
    response = await tokens.request(FLOWS, "GET", url, sandbox="dev")
    assert response.data["items"][0]["name"] == "flow dev-flow"
    with pytest.raises(AdobeNotFound, match="FLOW-1439-404"):
        await tokens.request(FLOWS, "GET", url, sandbox="prod")


async def test_connection_specs_name_the_source(fake: FakeAdobe, tokens: TokenProvider) -> None:
    """GET /connectionSpecs/{id} answers the spec's name; an unknown id is 404."""
    fake.connection_specs[documents.S3_SPEC_ID] = documents.connection_spec()
    url = f"{fake.flow_service_url}/connectionSpecs/{documents.S3_SPEC_ID}"
    response = await tokens.request(FLOWS, "GET", url, sandbox="prod")
    assert response.data["items"][0]["name"] == "Amazon S3"
    with pytest.raises(AdobeNotFound):
        await tokens.request(FLOWS, "GET", url + "0", sandbox="prod")


async def test_runs_filter_by_flow_and_time_window(fake: FakeAdobe, tokens: TokenProvider) -> None:
    """GET /runs filters on flowId and startedAtUTC (epoch ms) and pages like /flows."""
    fake.runs["prod"] = [
        documents.run(f"r{n}", "f1" if n < 5 else "f2", started_ms=1_000 * n) for n in range(1, 8)
    ]
    window = ["flowId==f1", "metrics.durationSummary.startedAtUTC>1500"]
    runs = await list_all(fake, tokens, "/runs", window)
    assert [run["id"] for run in runs] == ["r2", "r3", "r4"]
    assert fake.requests_to("runs")[1].query.getall("property") == window


@pytest.mark.usefixtures("flows")
async def test_count_and_limit_together_are_refused(fake: FakeAdobe, tokens: TokenProvider) -> None:
    """count=true answers a count, and with limit the documented 1401-400 error."""
    url = fake.flow_service_url + "/flows"
    response = await tokens.request(FLOWS, "GET", url, sandbox="prod", params=[("count", "true")])
    assert response.data == {"count": 5}
    params = [("count", "true"), ("limit", "2")]
    with pytest.raises(AdobeUnexpectedStatus, match="FLOW-1401-400"):
        await tokens.request(FLOWS, "GET", url, sandbox="prod", params=params)


async def test_registration_resource_has_the_documented_fields(
    fake: FakeAdobe, tokens: TokenProvider
) -> None:
    """The registration answers webhook_status, enabled, delivery_type and its journal link."""
    document = documents.registration(webhook_status="hook_unreachable", enabled=False)
    document["_links"]["rel:events"]["href"] = fake.journal_url
    url = fake.add_registration(document)
    response = await tokens.request(AdobeApi.REGISTRATION, "GET", url)
    data = response.data
    assert (data["webhook_status"], data["enabled"], data["delivery_type"]) == (
        "hook_unreachable",
        False,
        "webhook",
    )
    assert data["_links"]["rel:events"]["href"] == fake.journal_url
    with pytest.raises(AdobeNotFound):
        await tokens.request(
            AdobeApi.REGISTRATION, "GET", url.replace("/registrations/", "/registrations/x")
        )


async def test_journal_pages_follow_next_links_to_the_end(
    fake: FakeAdobe, tokens: TokenProvider
) -> None:
    """200 pages link rel=next (on another path prefix); the end is a 204 with Retry-After 10."""
    positions = fake.add_journal_events(*({"event_id": f"e{n}"} for n in range(3)))
    first = await tokens.request(JOURNAL, "GET", fake.journal_url)
    assert [e["event"]["event_id"] for e in first.data["events"]] == ["e0", "e1"]
    assert first.data["_page"] == {"last": positions[1], "count": 2}
    assert first.links["next"].path.startswith("/events-fast/")
    second = await tokens.request(JOURNAL, "GET", first.links["next"])
    assert [e["position"] for e in second.data["events"]] == [positions[2]]
    end = await tokens.request(JOURNAL, "GET", second.links["next"])
    assert (end.status, end.retry_after) == (204, 10)
    assert end.links["next"].query["since"] == positions[2]
    assert "validate" in end.links


async def test_empty_journal_answers_204_without_retry_after(
    fake: FakeAdobe, tokens: TokenProvider
) -> None:
    """A journal read with no query and no events answers 204 with a next link only."""
    response = await tokens.request(JOURNAL, "GET", fake.journal_url)
    assert (response.status, response.retry_after) == (204, None)
    assert str(response.links["next"]) == fake.journal_url


async def test_journal_retry_after_may_be_an_http_date(
    fake: FakeAdobe, tokens: TokenProvider, clock: WallClock
) -> None:
    """The end-of-journal 204 may carry Retry-After as an HTTP date."""
    (position,) = fake.add_journal_events({"event_id": "e0"})
    fake.journal_retry_after = email.utils.formatdate(clock.now + 45, usegmt=True)
    response = await tokens.request(JOURNAL, "GET", fake.journal_url, params=[("since", position)])
    assert response.retry_after == 45


async def test_expired_position_answers_410_in_plain_text(
    fake: FakeAdobe, tokens: TokenProvider
) -> None:
    """A position older than the journal keeps answers 410 with a plain-text body."""
    positions = fake.add_journal_events({"event_id": "e0"}, {"event_id": "e1"})
    fake.journal_expired = 1
    with pytest.raises(AdobeUnexpectedStatus) as caught:
        await tokens.request(JOURNAL, "GET", fake.journal_url, params=[("since", positions[0])])
    assert caught.value.status == 410
    assert caught.value.body == f"Events at position {positions[0]} have expired.".encode()
    oldest = await tokens.request(JOURNAL, "GET", fake.journal_url)
    assert [e["position"] for e in oldest.data["events"]] == [positions[1]]


async def test_journal_latest_seek_and_limit(
    fake: FakeAdobe, tokens: TokenProvider, clock: WallClock
) -> None:
    """latest=true jumps to the end, seek goes back in time, limit stays in next links."""
    fake.add_journal_events({"event_id": "old"}, at=clock.now - 7200)
    fake.add_journal_events({"event_id": "new1"}, {"event_id": "new2"})
    latest = await tokens.request(JOURNAL, "GET", fake.journal_url, params=[("latest", "true")])
    assert latest.status == 204
    params = [("seek", "-PT1H"), ("limit", "1")]
    sought = await tokens.request(JOURNAL, "GET", fake.journal_url, params=params)
    assert [e["event"]["event_id"] for e in sought.data["events"]] == ["new1"]
    assert sought.links["next"].query["limit"] == "1"


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"Authorization": None}, 403, "403010"),
        ({"Authorization": "Bearer forged"}, 401, "401013"),
        ({"x-api-key": "someone-else"}, 403, "403003"),
        ({"x-gw-ims-org-id": None}, 400, "400003"),
        ({"x-gw-ims-org-id": "OTHER@AdobeOrg"}, 403, "403025"),
        ({"x-sandbox-name": None}, 400, "FLOW-1102-400"),
    ],
)
async def test_api_routes_check_token_key_org_and_sandbox(
    fake: FakeAdobe,
    tokens: TokenProvider,
    adobe_client: AdobeClient,
    change: dict[str, str | None],
    status: int,
    code: str,
) -> None:
    """Each missing or wrong auth header gets the gateway's documented refusal."""
    headers: dict[str, str | None] = {
        **tokens.authorized_headers(FLOWS, await tokens.token(), sandbox="prod"),
        **change,
    }
    sent = {name: value for name, value in headers.items() if value is not None}
    with pytest.raises((AdobeUnauthorized, AdobeUnexpectedStatus)) as caught:
        await adobe_client.request(FLOWS, "GET", fake.flow_service_url + "/flows", headers=sent)
    assert caught.value.status == status
    assert code in str(caught.value)


async def test_expired_tokens_are_refused(
    fake: FakeAdobe, tokens: TokenProvider, adobe_client: AdobeClient, clock: WallClock
) -> None:
    """A token past its expires_in answers 401 at every API."""
    headers = tokens.authorized_headers(JOURNAL, await tokens.token())
    clock.advance(fake.expires_in)
    with pytest.raises(AdobeUnauthorized, match="401013"):
        await adobe_client.request(JOURNAL, "GET", fake.journal_url, headers=headers)
