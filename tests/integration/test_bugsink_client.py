"""The Bugsink client against a real Bugsink: features, paging, events, resolving, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from bugsink_sync.bugsink import BugsinkClient, Feature, ResolveOutcome
from bugsink_sync.http import AuthError, NotFoundError, ServiceUnavailable
from tests.lab.bugsink import (
    BugsinkProject,
    BugsinkServer,
    send_envelope,
    send_events,
    start_bugsink,
)

pytestmark = pytest.mark.bugsink


@pytest.fixture
async def client(bugsink: BugsinkServer) -> AsyncIterator[BugsinkClient]:
    async with BugsinkClient(bugsink.url, bugsink.token) as c:
        yield c


@pytest.fixture(scope="module")
def old_bugsink() -> Iterator[BugsinkServer]:
    """Bugsink 2.0.11: no resolve action, no state filter, version reported as 1.0.0."""
    with start_bugsink("2.0.11") as server:
        yield server


async def test_current_server_offers_every_feature(client: BugsinkClient) -> None:
    info = await client.server_info()
    assert info.version == "2.6.2"
    assert info.features == frozenset(Feature)


async def test_unresolved_issues_follow_the_cursor_past_250(
    client: BugsinkClient, bugsink_project: BugsinkProject
) -> None:
    send_events(bugsink_project.dsn, ["unique:page"], count=260)
    pages = [page async for page in client.unresolved_issues(bugsink_project.id)]
    assert [len(p) for p in pages] == [250, 10]
    assert len({issue.id for page in pages for issue in page}) == 260


async def test_resolved_issues_are_not_listed(
    bugsink: BugsinkServer, client: BugsinkClient, bugsink_project: BugsinkProject
) -> None:
    send_events(bugsink_project.dsn, ["zero_div", "key_error"])
    first, _ = bugsink.list_issues(bugsink_project.id)
    assert await client.resolve(first["id"]) is ResolveOutcome.RESOLVED
    assert await client.resolve(first["id"]) is ResolveOutcome.ALREADY_RESOLVED
    listed = [i.id async for page in client.unresolved_issues(bugsink_project.id) for i in page]
    assert first["id"] not in listed and len(listed) == 1


async def test_latest_event_has_data_and_markdown(
    bugsink: BugsinkServer, client: BugsinkClient, bugsink_project: BugsinkProject
) -> None:
    send_events(bugsink_project.dsn, ["request"])
    (issue,) = bugsink.list_issues(bugsink_project.id)
    event = await client.latest_event(issue["id"])
    assert event is not None
    assert event.data["request"]["method"] == "POST"
    assert event.data["exception"]["values"][-1]["type"] == "RuntimeError"
    assert "RuntimeError" in event.stacktrace_md


async def test_raw_javascript_envelope_is_read(
    bugsink: BugsinkServer, client: BugsinkClient, bugsink_project: BugsinkProject
) -> None:
    send_envelope(
        bugsink_project.dsn,
        {
            "platform": "javascript",
            "exception": {"values": [{"type": "TypeError", "value": "t.map is not a function"}]},
        },
    )
    (issue,) = [i async for page in client.unresolved_issues(bugsink_project.id) for i in page]
    assert (issue.calculated_type, issue.calculated_value) == (
        "TypeError",
        "t.map is not a function",
    )
    event = await client.latest_event(issue.id)
    assert event is not None and event.data["platform"] == "javascript"


async def test_token_without_triage_capability_is_an_auth_error(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject
) -> None:
    send_events(bugsink_project.dsn, ["zero_div"])
    (issue,) = bugsink.list_issues(bugsink_project.id)
    token = bugsink.create_token(issues_read=True, events_read=True, projects_read=True)
    async with BugsinkClient(bugsink.url, token) as scoped:
        with pytest.raises(AuthError) as err:
            await scoped.resolve(issue["id"])
    assert err.value.status == 403
    assert "issues:triage" in str(err.value)
    assert token not in str(err.value)


async def test_bad_token_and_unknown_issue(bugsink: BugsinkServer) -> None:
    async with BugsinkClient(bugsink.url, "0" * 40) as bad:
        with pytest.raises(AuthError, match="create_auth_token"):
            await bad.check_token()
    async with BugsinkClient(bugsink.url, bugsink.token) as good:
        with pytest.raises(NotFoundError):
            await good.issue("00000000-0000-0000-0000-000000000000")


async def test_unreachable_server_is_named_with_the_fix() -> None:
    async with BugsinkClient("http://127.0.0.1:1", "0" * 40, timeout=2) as nowhere:
        with pytest.raises(ServiceUnavailable) as err:
            await nowhere.check_token()
    assert str(err.value).startswith("Bugsink: checking the token at http://127.0.0.1:1 failed")
    assert "BUGSINK_URL" in str(err.value)


async def test_old_server_has_no_resolve_and_ignores_the_state_filter(
    old_bugsink: BugsinkServer,
) -> None:
    project = old_bugsink.create_project("old-shop")
    send_events(project.dsn, ["zero_div", "key_error"], version="2.0.11")
    async with BugsinkClient(old_bugsink.url, old_bugsink.token) as client:
        info = await client.server_info()
        assert info.version == "1.0.0" and info.features == frozenset()
        issues = [i async for page in client.unresolved_issues(project.id) for i in page]
        assert len(issues) == 2
        assert await client.resolve(issues[0].id) is ResolveOutcome.UNSUPPORTED
