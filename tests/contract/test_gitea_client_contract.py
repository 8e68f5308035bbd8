"""Our Gitea client against the test server: every request it sends must be one Gitea's
OpenAPI spec declares, and it must cope with the server's quirks."""

from __future__ import annotations

import pytest

from bugsink_sync.gitea import GiteaClient
from bugsink_sync.http import ApiError, AuthError, NotFoundError, RetryPolicy, ServiceUnavailable
from tests.lab.gitea.fixtures import GiteaRepoFixture, make_gitea_repo
from tests.lab.gitea.server import GiteaTestServer
from tests.lab.gitea.spec import validate_request, validate_response

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, budget_seconds=5)


def client_for(gitea: GiteaRepoFixture, token: str | None = None) -> GiteaClient:
    return GiteaClient(gitea.url, token or gitea.token, gitea.owner, gitea.repo, retry=FAST)


def assert_requests_match_the_spec(gitea: GiteaRepoFixture) -> int:
    recorded = gitea.requests()
    for request in recorded:
        validate_request(request.method, request.path, request.query, request.json)
    return len(recorded)


async def test_every_call_the_client_makes_is_declared_in_the_spec(gitea: GiteaRepoFixture) -> None:
    for index in range(120):  # three pages of labels at Gitea's 50-per-page cap
        gitea.state.add_label(gitea.owner, gitea.repo, f"l-{index:03d}", "#abcdef")
    async with client_for(gitea) as client:
        assert (await client.version()).startswith("1.")
        repo = await client.repository()
        assert repo.full_name == f"{gitea.owner}/{gitea.repo}" and repo.has_issues
        assert len(await client.labels()) == 120
        label = await client.create_label("source:bugsink", "#10B981")
        assert label.color == "10b981"
        issue = await client.create_issue("[E] x", "body <!-- m -->", [label.id])
        assert [lab.name for lab in issue.labels] == ["source:bugsink"]
        other = await client.create_label("env:test", "#2563eb")
        after = await client.add_labels(issue.number, [other.id])
        assert sorted(lab.name for lab in after) == ["env:test", "source:bugsink"]
        listed = [i async for i in client.issues(labels=["source:bugsink"])]
        assert [i.number for i in listed] == [issue.number]
    assert assert_requests_match_the_spec(gitea) >= 9


async def test_responses_the_client_parses_match_the_spec(gitea: GiteaRepoFixture) -> None:
    async with client_for(gitea) as client:
        await client.create_label("a", "#000000")
        await client.create_issue("t", "b", [])
    for request in gitea.requests():
        assert request.status is not None
        assert request.status < 400
    validate_response("GET", "/api/v1/version", 200, {"version": "1.26.3"})


async def test_issue_listing_reads_every_page(gitea: GiteaRepoFixture) -> None:
    for index in range(55):
        gitea.state.add_issue(gitea.owner, gitea.repo, f"issue {index}")
    async with client_for(gitea) as client:
        numbers = [i.number async for i in client.issues()]
    assert sorted(numbers) == list(range(1, 56))


async def test_errors_are_typed_and_keep_the_server_message(gitea: GiteaRepoFixture) -> None:
    async with client_for(gitea, token="not-a-token") as bad:
        with pytest.raises(AuthError) as err:
            await bad.repository()
    assert err.value.status == 401
    assert "invalid username, password or token" in str(err.value)
    assert "GITEA_API_TOKEN" in str(err.value)
    async with client_for(gitea) as client:
        with pytest.raises(ApiError) as invalid:
            await client.create_label("x", "not-a-colour")
        assert invalid.value.status == 422 and "invalid color" in invalid.value.server_message
        with pytest.raises(ApiError) as empty:
            await client.create_issue("", "body", [])
        assert empty.value.status == 422 and "[Title]: Required" in empty.value.server_message


async def test_missing_repository_and_archived_repository(gitea_server: GiteaTestServer) -> None:
    archived = make_gitea_repo(gitea_server, archived=True)
    async with GiteaClient(archived.url, archived.token, archived.owner, "nope", retry=FAST) as c:
        with pytest.raises(NotFoundError, match="GITEA_REPO"):
            await c.repository()
    async with client_for(archived) as client:
        with pytest.raises(ApiError) as err:
            await client.create_issue("t", "b", [])
    assert err.value.status == 423 and "archived" in str(err.value)


async def test_organisation_labels_are_usable(gitea_server: GiteaTestServer) -> None:
    org = make_gitea_repo(gitea_server, org=True)
    org.state.add_org_label(org.owner, "env:production", "#dc2626")
    async with client_for(org) as client:
        names = [label.name for label in await client.labels()]
    assert names == ["env:production"]


async def test_retries_idempotent_reads_but_never_a_create(gitea: GiteaRepoFixture) -> None:
    gitea.add_fault("GET", "/labels$", "error", times=2, status=503)
    gitea.add_fault("POST", "/issues$", "error", times=1, status=500)
    async with client_for(gitea) as client:
        assert await client.labels() == []
        with pytest.raises(ServiceUnavailable) as err:
            await client.create_issue("t", "b", [])
    assert err.value.status == 500
    posts = [r for r in gitea.requests() if r.method == "POST"]
    assert len(posts) == 1


async def test_rate_limit_honours_retry_after(gitea: GiteaRepoFixture) -> None:
    gitea.add_fault("GET", "$", "rate_limit", times=1, retry_after=1)
    async with client_for(gitea) as client:
        repo = await client.repository()
    assert repo.full_name.endswith(gitea.repo)
    gets = [r for r in gitea.requests() if r.method == "GET"]
    assert len(gets) == 2 and gets[1].time - gets[0].time >= 0.9
