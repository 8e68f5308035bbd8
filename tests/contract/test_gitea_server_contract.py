"""Contract tests of the fake Gitea (tests/lab/gitea) over real HTTP.

Every response that goes through the `api`/`anon` clients is validated against the vendored
Gitea 1.26.3 spec in strict mode (all listed fields present, no extra ones), and each item of
the checklist in docs/gitea-api.md §5 is asserted here, so the product's tests can trust the
double to behave like the real server.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.lab.gitea import GiteaState, GiteaTestServer
from tests.lab.gitea.fixtures import GiteaRepoFixture, make_gitea_repo
from tests.lab.gitea.spec import SpecError, validate_request, validate_response
from tests.lab.gitea.state import ellipsis_display_string, normalize_color

ROOT = Path(__file__).resolve().parents[2]
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$")
SCOPE_MSG = "token does not have at least one of required scope(s), required=[{}], token scope={}"


# --- helpers ---------------------------------------------------------------------------------


def _validate_hook(response: httpx.Response) -> None:
    """Validate every response against the spec (strict: complete objects)."""
    response.read()
    body: Any = None
    if response.content:
        is_json = "json" in response.headers.get("content-type", "")
        body = response.json() if is_json else response.text
    request = response.request
    path = request.url.raw_path.decode().split("?", 1)[0]
    validate_response(request.method, path, response.status_code, body, strict=True)


def client_for(
    base: GiteaRepoFixture | GiteaTestServer, token: str | None = None, **kwargs: Any
) -> httpx.Client:
    """httpx client on the API with spec validation; `token=None` → anonymous."""
    headers = {"Authorization": f"token {token}"} if token else {}
    headers.update(kwargs.pop("headers", {}))
    return httpx.Client(
        base_url=base.url + "/api/v1",
        headers=headers,
        timeout=kwargs.pop("timeout", 5.0),
        event_hooks={"response": [_validate_hook]},
        **kwargs,
    )


@pytest.fixture
def api(gitea: GiteaRepoFixture) -> Iterator[httpx.Client]:
    """Client authenticated as the fixture's user (all scopes)."""
    with client_for(gitea, gitea.token) as client:
        yield client


@pytest.fixture
def anon(gitea: GiteaRepoFixture) -> Iterator[httpx.Client]:
    """Anonymous client."""
    with client_for(gitea) as client:
        yield client


@pytest.fixture
def repo_path(gitea: GiteaRepoFixture) -> str:
    """API path of the fixture repo, relative to /api/v1."""
    return f"/repos/{gitea.owner}/{gitea.repo}"


def create_issue(api: httpx.Client, repo_path: str, **body: Any) -> dict[str, Any]:
    """POST an issue and insist on 201."""
    body.setdefault("title", "an issue")
    response = api.post(f"{repo_path}/issues", json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def create_label(api: httpx.Client, repo_path: str, name: str, color: str = "e11d48") -> int:
    """POST a repo label and return its id."""
    response = api.post(f"{repo_path}/labels", json={"name": name, "color": color})
    assert response.status_code == 201, response.text
    label_id: int = response.json()["id"]
    return label_id


def other_user(gitea: GiteaRepoFixture, scopes: list[str] | None = None) -> str:
    """A second user (no rights on the fixture repo beyond public read); returns its token."""
    token = f"other-{os.urandom(6).hex()}"
    gitea.state.add_user(f"u-{os.urandom(6).hex()}", token, scopes)
    return token


def assert_error(response: httpx.Response, status: int, message: str | None = None) -> None:
    """Gitea's error shape: {"message","url"} (+ "errors" on 404)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["url"].endswith("/api/swagger")
    if message is not None:
        assert body["message"] == message
    if status == 404:
        assert "errors" in body


# --- misc endpoints and auth -----------------------------------------------------------------


def test_version_needs_no_auth(anon: httpx.Client) -> None:
    response = anon.get("/version")
    assert response.status_code == 200
    assert response.json() == {"version": "1.26.3"}
    assert response.headers["content-type"] == "application/json;charset=utf-8"


@pytest.mark.parametrize(
    "header",
    ["token {}", "TOKEN {}", "Bearer {}", "bearer {}", "token   {}"],
)
def test_header_token_forms(gitea: GiteaRepoFixture, header: str) -> None:
    with client_for(gitea, headers={"Authorization": header.format(gitea.token)}) as client:
        response = client.get("/user")
    assert response.status_code == 200
    assert response.json()["login"] == gitea.login
    assert "X-Gitea-Warning" not in response.headers


@pytest.mark.parametrize("param", ["token", "access_token"])
def test_query_token_works_with_deprecation_warning(gitea: GiteaRepoFixture, param: str) -> None:
    with client_for(gitea) as client:
        response = client.get("/user", params={param: gitea.token})
    assert response.status_code == 200
    assert response.headers["X-Gitea-Warning"].startswith("token and access_token API")
    recorded = gitea.state.requests[-1]
    assert recorded.query[param] == "REDACTED"


def test_query_token_can_be_disabled(gitea: GiteaRepoFixture) -> None:
    gitea.state.config.disable_query_auth_token = True
    with client_for(gitea) as client:
        assert_error(client.get("/user", params={"token": gitea.token}), 401, "token is required")


@pytest.mark.parametrize(
    "user_pass",
    ["anyone:{token}", "{token}:", "{token}:x-oauth-basic"],
)
def test_basic_auth_with_token(gitea: GiteaRepoFixture, user_pass: str) -> None:
    raw = user_pass.format(token=gitea.token).encode()
    header = "Basic " + base64.b64encode(raw).decode()
    with client_for(gitea, headers={"Authorization": header}) as client:
        assert client.get("/user").json()["login"] == gitea.login


def test_basic_auth_with_password(gitea: GiteaRepoFixture) -> None:
    gitea.state.add_user("pw-" + gitea.repo, password="s3cret")
    with client_for(gitea, auth=("pw-" + gitea.repo, "s3cret")) as client:
        assert client.get("/user").status_code == 200
    with client_for(gitea, auth=("pw-" + gitea.repo, "wrong")) as client:
        assert_error(client.get("/user"), 401, "invalid username, password or token")


def test_malformed_authorization_header_is_anonymous(gitea: GiteaRepoFixture) -> None:
    with client_for(gitea, headers={"Authorization": f"token {gitea.token} extra"}) as client:
        assert_error(client.get("/user"), 401, "token is required")
        assert client.get("/version").status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/version"),
        ("GET", "/user"),
        ("GET", "/repos/issues/search"),
        ("GET", "{repo}"),
        ("GET", "/orgs/whatever"),
        ("GET", "/orgs/whatever/labels"),
        ("GET", "{repo}/labels"),
        ("POST", "{repo}/labels"),
        ("GET", "{repo}/labels/1"),
        ("PATCH", "{repo}/labels/1"),
        ("GET", "{repo}/issues"),
        ("POST", "{repo}/issues"),
        ("GET", "{repo}/issues/1"),
        ("PATCH", "{repo}/issues/1"),
        ("GET", "{repo}/issues/1/comments"),
        ("POST", "{repo}/issues/1/comments"),
        ("GET", "{repo}/issues/1/labels"),
        ("POST", "{repo}/issues/1/labels"),
        ("PUT", "{repo}/issues/1/labels"),
        ("DELETE", "{repo}/issues/1/labels"),
        ("DELETE", "{repo}/issues/1/labels/1"),
        ("GET", "/repos/nobody/nothing"),
    ],
)
def test_invalid_token_is_401_everywhere(
    gitea: GiteaRepoFixture, repo_path: str, method: str, path: str
) -> None:
    with client_for(gitea, "not-a-real-token") as client:
        response = client.request(method, path.format(repo=repo_path), json={})
    assert_error(response, 401, "invalid username, password or token")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/issues"),
        ("PATCH", "/issues/1"),
        ("POST", "/issues/1/comments"),
        ("POST", "/labels"),
        ("POST", "/issues/1/labels"),
    ],
)
def test_writes_without_auth_need_a_token(
    gitea: GiteaRepoFixture, anon: httpx.Client, repo_path: str, method: str, path: str
) -> None:
    gitea.state.add_issue(gitea.owner, gitea.repo, "seed")
    response = anon.request(method, repo_path + path, json={"title": "x", "body": "x"})
    assert_error(response, 401, "token is required")


def test_anonymous_reads_of_public_repo(anon: httpx.Client, repo_path: str) -> None:
    assert anon.get(repo_path).json()["permissions"] == {
        "admin": False,
        "push": False,
        "pull": True,
    }
    assert anon.get(f"{repo_path}/issues").status_code == 200


def test_get_user_and_repo(gitea: GiteaRepoFixture, api: httpx.Client, repo_path: str) -> None:
    me = api.get("/user").json()
    assert me["login"] == gitea.login
    assert me["email"] == f"{gitea.login}@example.com"
    repo = api.get(repo_path).json()
    assert repo["full_name"] == f"{gitea.owner}/{gitea.repo}"
    assert repo["has_issues"] is True
    assert repo["archived"] is False
    assert repo["permissions"] == {"admin": True, "push": True, "pull": True}
    assert repo["html_url"] == f"{gitea.url}/{gitea.owner}/{gitea.repo}"
    assert repo["owner"]["login"] == gitea.owner
    # owner/repo lookups are case-insensitive; responses use the canonical spelling
    shouted = f"/repos/{gitea.owner.upper()}/{gitea.repo.upper()}"
    assert api.get(shouted).json()["name"] == gitea.repo


def test_unknown_and_private_repos_are_404(
    gitea: GiteaRepoFixture, api: httpx.Client, repo_path: str
) -> None:
    assert_error(api.get("/repos/nobody/nothing"), 404, "not found")
    stranger = other_user(gitea)
    gitea.state.update_repo(gitea.owner, gitea.repo, private=True)
    with client_for(gitea, stranger) as client:
        assert_error(client.get(repo_path), 404)
        assert_error(client.get(f"{repo_path}/issues"), 404)
    assert api.get(repo_path).json()["private"] is True


def test_org_endpoints(gitea_org: GiteaRepoFixture, gitea: GiteaRepoFixture) -> None:
    with client_for(gitea_org, gitea_org.token) as client:
        org = client.get(f"/orgs/{gitea_org.owner}").json()
        assert org["username"] == org["name"] == gitea_org.owner
        assert_error(client.get(f"/orgs/{gitea.login}"), 404)
        assert_error(client.get(f"/orgs/{gitea.login}/labels"), 404)
        assert_error(client.get("/orgs/no-such-org"), 404)


def test_unknown_route_and_method(gitea: GiteaRepoFixture) -> None:
    with httpx.Client(base_url=gitea.api_url, headers=gitea.headers) as raw:  # not in the spec
        assert_error(raw.get("/no/such/endpoint"), 404)
        assert raw.delete("/version").status_code == 405


# --- scopes and permissions ------------------------------------------------------------------


def test_scope_enforcement(gitea: GiteaRepoFixture, repo_path: str) -> None:
    gitea.state.add_token(gitea.login, "ro-" + gitea.token, ["read:issue"])
    with client_for(gitea, "ro-" + gitea.token) as client:
        assert client.get(f"{repo_path}/issues").status_code == 200
        response = client.post(f"{repo_path}/issues", json={"title": "x"})
        assert_error(response, 403, SCOPE_MSG.format("write:issue", "read:issue"))
        # the scope check runs before the repo lookup: 403, not 404
        assert_error(client.post("/repos/nobody/nothing/issues", json={"title": "x"}), 403)
        assert_error(client.get(repo_path), 403, SCOPE_MSG.format("read:repository", "read:issue"))
        assert_error(client.get("/user"), 403, SCOPE_MSG.format("read:user", "read:issue"))
        assert_error(client.get("/orgs/x/labels"), 403)
        assert client.get("/version").status_code == 200


def test_minimal_sync_token(gitea: GiteaRepoFixture, repo_path: str) -> None:
    scopes = ["write:issue", "read:repository"]
    gitea.state.add_token(gitea.login, "min-" + gitea.token, scopes)
    with client_for(gitea, "min-" + gitea.token) as client:
        assert client.get(repo_path).status_code == 200
        assert client.get(f"{repo_path}/labels").status_code == 200  # write implies read
        create_issue(client, repo_path)
        assert client.get("/user").status_code == 403


def test_public_only_token_hides_private_repos(gitea: GiteaRepoFixture, repo_path: str) -> None:
    gitea.state.update_repo(gitea.owner, gitea.repo, private=True)
    gitea.state.add_token(gitea.login, "pub-" + gitea.token, ["public-only", "all"])
    with client_for(gitea, "pub-" + gitea.token) as client:
        assert_error(client.get(repo_path), 404)


def test_non_writer_is_limited(gitea: GiteaRepoFixture, api: httpx.Client, repo_path: str) -> None:
    label_id = create_label(api, repo_path, "bug")
    mine = create_issue(api, repo_path, title="owner's")
    with client_for(gitea, other_user(gitea)) as client:
        # readers may open issues, but labels they send are silently dropped
        theirs = create_issue(client, repo_path, title="reader's", labels=[label_id])
        assert theirs["labels"] == []
        add = client.post(f"{repo_path}/issues/{theirs['number']}/labels", json={"labels": [1]})
        assert_error(add, 403, "write permission is required")
        assert_error(client.post(f"{repo_path}/labels", json={"name": "x", "color": "fff"}), 403)
        # editing someone else's issue: 403 with an *empty* body
        edit = client.patch(f"{repo_path}/issues/{mine['number']}", json={"state": "closed"})
        assert edit.status_code == 403
        assert edit.content == b""
        # the poster may close their own issue
        own = client.patch(f"{repo_path}/issues/{theirs['number']}", json={"state": "closed"})
        assert own.status_code == 201


def test_collaborator_with_write_may_label(
    gitea: GiteaRepoFixture, api: httpx.Client, repo_path: str
) -> None:
    label_id = create_label(api, repo_path, "bug")
    token = other_user(gitea)
    login = next(
        u.login for u in gitea.state.users.values() if u.id == gitea.state.tokens[token].user_id
    )
    gitea.state.add_collaborator(gitea.owner, gitea.repo, login, write=True)
    with client_for(gitea, token) as client:
        assert create_issue(client, repo_path, labels=[label_id])["labels"][0]["id"] == label_id


# --- labels ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [("#E11D48", "e11d48"), ("e11d48", "e11d48"), ("e1d", "ee11dd"), ("#ABC", "aabbcc")],
)
def test_label_color_normalisation(
    api: httpx.Client, repo_path: str, given: str, stored: str
) -> None:
    response = api.post(f"{repo_path}/labels", json={"name": "c", "color": given})
    assert response.status_code == 201
    assert response.json()["color"] == stored


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("#12345g", "invalid color: #12345g"),
        ("12345", "invalid color: #12345"),
        ("red", "invalid color: #red"),
        ("", "[Color]: Required"),
    ],
)
def test_bad_label_color_is_422(
    api: httpx.Client, repo_path: str, given: str, message: str
) -> None:
    response = api.post(f"{repo_path}/labels", json={"name": "c", "color": given})
    assert_error(response, 422, message)


def test_label_name_required(api: httpx.Client, repo_path: str) -> None:
    response = api.post(f"{repo_path}/labels", json={"name": "", "color": "fff"})
    assert_error(response, 422, "[Name]: Required")


def test_duplicate_labels_are_allowed(
    gitea: GiteaRepoFixture, api: httpx.Client, repo_path: str
) -> None:
    first = create_label(api, repo_path, "source:bugsink")
    second = create_label(api, repo_path, "source:bugsink")
    assert first != second
    label = api.get(f"{repo_path}/labels/{first}").json()
    assert label["url"] == f"{gitea.api_url}{repo_path}/labels/{first}"
    assert set(label) == {"id", "name", "exclusive", "is_archived", "color", "description", "url"}


def test_label_list_sorted_paged_without_link(
    gitea: GiteaRepoFixture, api: httpx.Client, repo_path: str
) -> None:
    names = [f"l{n:03d}" for n in range(60)]
    for name in reversed(names):
        gitea.state.add_label(gitea.owner, gitea.repo, name)
    first = api.get(f"{repo_path}/labels")
    assert [lb["name"] for lb in first.json()] == names[:30]  # default page size 30
    assert first.headers["X-Total-Count"] == "60"
    assert "Link" not in first.headers  # labels never get a Link header
    clamped = api.get(f"{repo_path}/labels", params={"limit": 100, "page": 1})
    assert len(clamped.json()) == 50
    rest = api.get(f"{repo_path}/labels", params={"limit": 50, "page": 2})
    assert [lb["name"] for lb in rest.json()] == names[50:]
    beyond = api.get(f"{repo_path}/labels", params={"page": 9})
    assert beyond.json() == []


def test_label_get_by_name_and_patch(api: httpx.Client, repo_path: str) -> None:
    label_id = create_label(api, repo_path, "area/db")
    create_label(api, repo_path, "env:test")
    assert api.get(f"{repo_path}/labels/env:test").json()["name"] == "env:test"
    assert_error(api.get(f"{repo_path}/labels/999999"), 404)
    archived = api.patch(f"{repo_path}/labels/{label_id}", json={"is_archived": True})
    assert archived.status_code == 200
    assert archived.json()["is_archived"] is True
    renamed = api.patch(f"{repo_path}/labels/{label_id}", json={"name": "db", "color": "#ABC"})
    assert renamed.json()["name"] == "db"
    assert renamed.json()["color"] == "aabbcc"
    assert renamed.json()["is_archived"] is False  # quirk: omitted is_archived resets
    assert_error(api.patch(f"{repo_path}/labels/{label_id}", json={"color": "zz"}), 422)


def test_org_labels(gitea_org: GiteaRepoFixture) -> None:
    org = gitea_org.owner
    with client_for(gitea_org, gitea_org.token) as client:
        created = client.post(f"/orgs/{org}/labels", json={"name": "team:core", "color": "0f0"})
        assert created.status_code == 201
        label = created.json()
        assert label["url"] == f"{gitea_org.api_url}/orgs/{org}/labels/{label['id']}"
        listed = client.get(f"/orgs/{org}/labels")
        assert [lb["name"] for lb in listed.json()] == ["team:core"]
        assert listed.headers["X-Total-Count"] == "1"
        repo_labels = client.get(f"/repos/{org}/{gitea_org.repo}/labels").json()
        assert repo_labels == []  # org labels are not in the repo list


# --- issues ----------------------------------------------------------------------------------


def test_create_issue_shape(gitea: GiteaRepoFixture, api: httpx.Client, repo_path: str) -> None:
    issue = create_issue(api, repo_path, title="Boom", body="<!-- bugsink:42 -->")
    number = issue["number"]
    assert number == 1
    assert issue["html_url"] == f"{gitea.url}/{gitea.owner}/{gitea.repo}/issues/{number}"
    assert issue["url"] == f"{gitea.api_url}/repos/{gitea.owner}/{gitea.repo}/issues/{number}"
    assert issue["state"] == "open"
    assert issue["closed_at"] is None
    assert issue["assignees"] is None
    assert issue["assignee"] is None
    assert issue["labels"] == []
    assert issue["comments"] == 0
    assert issue["created_at"] == issue["updated_at"]
    assert issue["body"] == "<!-- bugsink:42 -->"
    assert issue["repository"]["full_name"] == f"{gitea.owner}/{gitea.repo}"
    assert api.get(f"{repo_path}/issues/{number}").json()["id"] == issue["id"]


def test_raw_json_escapes_html_like_go(api: httpx.Client, repo_path: str) -> None:
    response = api.post(f"{repo_path}/issues", json={"title": "t", "body": "<!-- m -->"})
    assert b"\\u003c!-- m --\\u003e" in response.content


def test_numbers_are_per_repo_shared_with_prs_and_never_reused(
    gitea: GiteaRepoFixture, api: httpx.Client, repo_path: str
) -> None:
    first = create_issue(api, repo_path)
    gitea.state.add_pull(gitea.owner, gitea.repo, "a PR")
    third = create_issue(api, repo_path)
    assert (first["number"], third["number"]) == (1, 3)
    gitea.state.delete_issue(gitea.owner, gitea.repo, 3)
    assert create_issue(api, repo_path)["number"] == 4
    other = make_gitea_repo(gitea.server)
    with client_for(other, other.token) as client:
        again = create_issue(client, f"/repos/{other.owner}/{other.repo}")
    assert again["number"] == 1
    assert again["id"] > first["id"]  # ids are global
    pr = api.get(f"{repo_path}/issues/2").json()
    assert pr["pull_request"]["html_url"].endswith(f"/{gitea.repo}/pulls/2")


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("   padded title \t\n", "padded title"),
        (" \t ", ""),  # whitespace passes `Required`, then is trimmed to empty (201)
        ("a" * 255, "a" * 255),
        ("a" * 256, "a" * 252 + "…"),
        ("é" * 300, "é" * 252 + "…"),  # 600 bytes; 'é' counts as width 1
        ("漢" * 200, "漢" * 126 + "…"),  # 600 bytes; CJK counts as width 2
        ("a" * 254 + "é", "a" * 254 + "é"),  # 256 bytes, but the tail fits: kept whole
    ],
)
def test_title_trim_and_truncation(
    api: httpx.Client, repo_path: str, title: str, expected: str
) -> None:
    assert create_issue(api, repo_path, title=title)["title"] == expected
    assert ellipsis_display_string(title.strip(), 255) == expected


def test_title_required(api: httpx.Client, repo_path: str) -> None:
    assert_error(api.post(f"{repo_path}/issues", json={"title": ""}), 422, "[Title]: Required")
    assert_error(api.post(f"{repo_path}/issues", json={"body": "x"}), 422, "[Title]: Required")


def test_binding_errors(api: httpx.Client, repo_path: str) -> None:
    bad_json = api.post(
        f"{repo_path}/issues", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert_error(bad_json, 422)
    assert bad_json.json()["message"].startswith("[]: ")
    wrong_type = api.post(f"{repo_path}/issues", json={"title": 5})
    assert_error(
        wrong_type,
        422,
        "[]: json: cannot unmarshal number 5 into Go struct field CreateIssueOption.title "
        "of type string",
    )
    no_type = api.post(f"{repo_path}/issues", content=b'{"title":"x"}')
    assert_error(no_type, 422, "[]: Empty Content-Type")
    case_insensitive = api.post(f"{repo_path}/issues", json={"Title": "x", "unknown": 1})
    assert case_insensitive.status_code == 201


def test_create_issue_labels_dropped_silently(
    gitea: GiteaRepoFixture, api: httpx.Client, repo_path: str
) -> None:
    mine = create_label(api, repo_path, "bug")
    foreign = make_gitea_repo(gitea.server)
    foreign_label = gitea.state.add_label(foreign.owner, foreign.repo, "bug").id
    issue = create_issue(api, repo_path, labels=[mine, foreign_label, 987654321])
    assert [lb["id"] for lb in issue["labels"]] == [mine]


def test_create_issue_with_org_label(gitea_org: GiteaRepoFixture) -> None:
    org_label = gitea_org.state.add_org_label(gitea_org.owner, "team:core").id
    path = f"/repos/{gitea_org.owner}/{gitea_org.repo}"
    with client_for(gitea_org, gitea_org.token) as client:
        issue = create_issue(client, path, labels=[org_label])
        assert issue["labels"][0]["url"].endswith(f"/orgs/{gitea_org.owner}/labels/{org_label}")
        # names also resolve org labels on the issue-labels endpoint
        added = client.post(f"{path}/issues/{issue['number']}/labels", json={"labels": ["x"]})
        assert [lb["name"] for lb in added.json()] == ["team:core"]


def test_create_closed_issue(api: httpx.Client, repo_path: str) -> None:
    issue = create_issue(api, repo_path, closed=True)
    assert issue["state"] == "closed"
    assert STAMP.match(issue["closed_at"])


def test_assignees(gitea: GiteaRepoFixture, api: httpx.Client, repo_path: str) -> None:
    issue = create_issue(api, repo_path, assignees=[gitea.login])
    assert [u["login"] for u in issue["assignees"]] == [gitea.login]
    assert issue["assignee"]["login"] == gitea.login
    response = api.post(f"{repo_path}/issues", json={"title": "x", "assignees": ["ghost-x"]})
    assert_error(response, 422, "Assignee does not exist: [name: ghost-x]")


def test_archived_repo_is_423(gitea: GiteaRepoFixture, api: httpx.Client, repo_path: str) -> None:
    issue = create_issue(api, repo_path)
    gitea.state.update_repo(gitea.owner, gitea.repo, archived=True)
    assert api.get(repo_path).json()["archived"] is True
    expected = f"{gitea.owner}/{gitea.repo} is archived"
    # 423 comes before body validation
    assert_error(api.post(f"{repo_path}/issues", json={"title": ""}), 423, expected)
    comment = api.post(f"{repo_path}/issues/{issue['number']}/comments", json={"body": "x"})
    assert_error(comment, 423, expected)


def test_issues_disabled_is_404(gitea: GiteaRepoFixture, api: httpx.Client, repo_path: str) -> None:
    gitea.state.update_repo(gitea.owner, gitea.repo, has_issues=False, has_pull_requests=False)
    assert api.get(repo_path).json()["has_issues"] is False
    assert_error(api.get(f"{repo_path}/issues"), 404)
    assert_error(api.post(f"{repo_path}/issues", json={"title": "x"}), 404)


def test_patch_issue(api: httpx.Client, repo_path: str) -> None:
    number = create_issue(api, repo_path)["number"]
    url = f"{repo_path}/issues/{number}"
    closed = api.patch(url, json={"state": "closed"})
    assert closed.status_code == 201  # not 200
    assert closed.json()["state"] == "closed"
    assert STAMP.match(closed.json()["closed_at"])
    again = api.patch(url, json={"state": "closed"})
    assert again.status_code == 201  # no-op, still 201
    reopened = api.patch(url, json={"state": "open"}).json()
    assert reopened["closed_at"] is None
    assert_error(api.patch(url, json={"state": "resolved"}), 412, "unknown state: resolved")
    edited = api.patch(url, json={"title": "x" * 300, "body": "new"}).json()
    assert edited["title"] == "x" * 252 + "…"
    assert edited["body"] == "new"
    assert api.patch(url, json={"title": ""}).json()["title"] == edited["title"]
    assert_error(api.patch(f"{repo_path}/issues/999", json={"state": "closed"}), 404)


def test_get_missing_issue_is_404(api: httpx.Client, repo_path: str) -> None:
    assert_error(api.get(f"{repo_path}/issues/424242"), 404)


# --- issue list ------------------------------------------------------------------------------


def seed(gitea: GiteaRepoFixture, count: int, **kwargs: Any) -> None:
    """Seed issues with distinct, increasing creation times."""
    start = gitea.state.now() - 10_000
    for n in range(count):
        gitea.state.add_issue(
            gitea.owner, gitea.repo, f"seeded {n}", created_unix=start + n, **kwargs
        )


def test_list_paging_clamp_total_and_link(
    gitea: GiteaRepoFixture, api: httpx.Client, repo_path: str
) -> None:
    seed(gitea, 120)
    base = f"{gitea.api_url}{repo_path}/issues"
    first = api.get(f"{repo_path}/issues", params={"state": "all", "type": "issues", "limit": 100})
    assert len(first.json()) == 50  # clamped
    assert first.headers["X-Total-Count"] == "120"
    assert first.headers["Link"] == (
        f'<{base}?limit=100&page=2&state=all&type=issues>; rel="next",'
        f'<{base}?limit=100&page=3&state=all&type=issues>; rel="last"'
    )
    assert "Link" in first.headers["Access-Control-Expose-Headers"]
    assert "X-Total-Count" in first.headers["Access-Control-Expose-Headers"]
    second = api.get(f"{repo_path}/issues", params={"page": 2, "limit": 50, "state": "all"})
    assert second.headers["Link"] == (
        f'<{base}?limit=50&page=3&state=all>; rel="next",'
        f'<{base}?limit=50&page=3&state=all>; rel="last",'
        f'<{base}?limit=50&page=1&state=all>; rel="first",'
        f'<{base}?limit=50&page=1&state=all>; rel="prev"'
    )
    last = api.get(f"{repo_path}/issues", params={"page": 3, "limit": 50})
    assert len(last.json()) == 20
    assert 'rel="next"' not in last.headers["Link"]
    assert api.get(f"{repo_path}/issues", params={"page": 9, "limit": 50}).json() == []
    for limit in ("0", "-3", "junk"):
        assert len(api.get(f"{repo_path}/issues", params={"limit": limit}).json()) == 30


def test_single_page_has_no_link(
    gitea: GiteaRepoFixture, api: httpx.Client, repo_path: str
) -> None:
    seed(gitea, 3)
    response = api.get(f"{repo_path}/issues")
    assert response.headers["X-Total-Count"] == "3"
    assert "Link" not in response.headers


def test_list_order_state_and_type(
    gitea: GiteaRepoFixture, api: httpx.Client, repo_path: str
) -> None:
    seed(gitea, 3)
    gitea.state.add_issue(gitea.owner, gitea.repo, "closed one", closed=True)
    gitea.state.add_pull(gitea.owner, gitea.repo, "a PR")
    titles = [i["title"] for i in api.get(f"{repo_path}/issues").json()]
    assert titles == ["a PR", "seeded 2", "seeded 1", "seeded 0"]  # open + PRs, newest first
    issues_only = api.get(f"{repo_path}/issues", params={"type": "issues"}).json()
    assert [i["title"] for i in issues_only] == ["seeded 2", "seeded 1", "seeded 0"]
    closed = api.get(f"{repo_path}/issues", params={"state": "closed"}).json()
    assert [i["title"] for i in closed] == ["closed one"]
    every = api.get(f"{repo_path}/issues", params={"state": "all"}).json()
    assert len(every) == 5
    unknown = api.get(f"{repo_path}/issues", params={"state": "bogus"}).json()
    assert len(unknown) == 4  # unknown state means open
    pulls = api.get(f"{repo_path}/issues", params={"type": "pulls"}).json()
    assert [i["title"] for i in pulls] == ["a PR"]


def test_labels_filter_and_semantics(
    gitea_org: GiteaRepoFixture,
) -> None:
    g, path = gitea_org, f"/repos/{gitea_org.owner}/{gitea_org.repo}"
    for name in ("a", "b", "dup", "dup"):
        g.state.add_label(g.owner, g.repo, name)
    g.state.add_org_label(g.owner, "orgwide")
    dup_ids = [lb.id for lb in g.state.labels_of(g.owner, g.repo) if lb.name == "dup"]
    g.state.add_issue(g.owner, g.repo, "both", labels=["a", "b"])
    g.state.add_issue(g.owner, g.repo, "only a", labels=["a"])
    g.state.add_issue(g.owner, g.repo, "one dup", labels=[dup_ids[0]])
    g.state.add_issue(g.owner, g.repo, "org", labels=["orgwide"])

    def titles(labels: str) -> list[str]:
        with client_for(g, g.token) as client:
            found = client.get(f"{path}/issues", params={"labels": labels, "state": "all"})
        return sorted(i["title"] for i in found.json())

    assert titles("a,b") == ["both"]  # AND, not "any of" as the spec says
    assert titles("a") == ["both", "only a"]
    assert titles("a,nope") == ["both", "only a"]  # unknown names are dropped
    everything = ["both", "one dup", "only a", "org"]
    assert titles("nope") == everything  # nothing resolves: no filter at all
    assert titles("orgwide") == everything  # org labels are ignored by this filter
    assert titles("dup") == []  # both same-named labels are required


def test_since_before_inclusive_and_422(
    gitea: GiteaRepoFixture, api: httpx.Client, repo_path: str
) -> None:
    base = gitea.state.now() - 1000
    for n in range(3):
        gitea.state.add_issue(
            gitea.owner, gitea.repo, f"t{n}", created_unix=base, updated_unix=base + 100 * n
        )
    stamp = api.get(f"{repo_path}/issues/2").json()["updated_at"]  # t1, updated base+100
    since = api.get(f"{repo_path}/issues", params={"since": stamp}).json()
    assert sorted(i["title"] for i in since) == ["t1", "t2"]
    before = api.get(f"{repo_path}/issues", params={"before": stamp}).json()
    assert sorted(i["title"] for i in before) == ["t0", "t1"]
    assert_error(api.get(f"{repo_path}/issues", params={"since": "yesterday"}), 422)
    assert_error(api.get(f"{repo_path}/issues", params={"created_by": "ghost-zz"}), 404)


def test_q_numeric_substring_and_indexer_lag(
    gitea: GiteaRepoFixture, api: httpx.Client, repo_path: str
) -> None:
    gitea.state.config.search_index_lag_seconds = 30
    seeded = gitea.state.add_issue(gitea.owner, gitea.repo, "old KeyError in parser")
    fresh = create_issue(api, repo_path, title="fresh ValueError", body="marker-xyz")

    def q(value: str) -> list[int]:
        return [i["number"] for i in api.get(f"{repo_path}/issues", params={"q": value}).json()]

    assert q("keyerror") == [seeded.number]  # indexed: case-insensitive substring
    assert q("marker-xyz") == []  # just created: the indexer has not caught up
    assert q(str(fresh["number"])) == [fresh["number"]]  # numeric q hits the DB at once
    gitea.state.advance_clock(31)
    assert q("marker-xyz") == [fresh["number"]]
    api.post(f"{repo_path}/issues/{seeded.number}/comments", json={"body": "seen in zebra.py"})
    assert q("zebra") == []  # comment text also waits for the indexer
    gitea.state.advance_clock(31)
    assert q("zebra") == [seeded.number]


# --- search ----------------------------------------------------------------------------------


def test_search_across_repos(gitea: GiteaRepoFixture, api: httpx.Client) -> None:
    gitea.state.add_label(gitea.owner, gitea.repo, "s1")
    second = f"{gitea.repo}-two"
    gitea.state.add_repo(gitea.owner, second)
    gitea.state.add_label(gitea.owner, second, "s2")
    gitea.state.add_issue(gitea.owner, gitea.repo, "one", labels=["s1"])
    gitea.state.add_issue(gitea.owner, second, "two", labels=["s2"])
    gitea.state.add_issue(gitea.owner, second, "three")
    params = {"owner": gitea.owner, "type": "issues"}
    found = api.get("/repos/issues/search", params=params)
    assert found.headers["X-Total-Count"] == "3"
    assert {i["repository"]["name"] for i in found.json()} == {gitea.repo, second}
    any_of = api.get("/repos/issues/search", params={**params, "labels": "s1,s2"}).json()
    assert sorted(i["title"] for i in any_of) == ["one", "two"]  # ANY semantics here
    assert_error(api.get("/repos/issues/search", params={"owner": "ghost-q"}), 400)
    assert_error(api.get("/repos/issues/search", params={"team": "core"}), 400)


def test_search_link_uses_unclamped_limit(gitea: GiteaRepoFixture, api: httpx.Client) -> None:
    seed(gitea, 120)
    response = api.get("/repos/issues/search", params={"owner": gitea.owner, "limit": 100})
    assert len(response.json()) == 50
    assert response.headers["X-Total-Count"] == "120"
    last = re.search(r"<([^>]*)>; rel=\"last\"", response.headers["Link"])
    assert last is not None
    assert "limit=100&owner=" in last.group(1)
    assert "page=2" in last.group(1)  # pages of 100, though only 50 came back
    default = api.get("/repos/issues/search", params={"owner": gitea.owner})
    assert len(default.json()) == 20  # limit 0 → UI.IssuePagingNum


# --- comments --------------------------------------------------------------------------------


def test_comments(gitea: GiteaRepoFixture, api: httpx.Client, repo_path: str) -> None:
    issue = create_issue(api, repo_path)
    url = f"{repo_path}/issues/{issue['number']}/comments"
    created = api.post(url, json={"body": "seen again"})
    assert created.status_code == 201
    comment = created.json()
    assert comment["html_url"] == f"{issue['html_url']}#issuecomment-{comment['id']}"
    assert comment["issue_url"] == issue["html_url"]  # the HTML url, not the API url
    assert comment["pull_request_url"] == ""
    assert_error(api.post(url, json={"body": ""}), 422, "[Body]: Required")
    api.patch(f"{repo_path}/issues/{issue['number']}", json={"state": "closed"})
    assert api.post(url, json={"body": "closed issues accept comments"}).status_code == 201
    after = api.get(f"{repo_path}/issues/{issue['number']}").json()
    assert after["comments"] == 2
    listed = api.get(url)
    assert [c["body"] for c in listed.json()] == ["seen again", "closed issues accept comments"]
    assert listed.headers["X-Total-Count"] == "2"


def test_comments_are_not_paged(gitea: GiteaRepoFixture, api: httpx.Client, repo_path: str) -> None:
    number = gitea.state.add_issue(gitea.owner, gitea.repo, "chatty").number
    for n in range(60):
        gitea.state.add_comment(gitea.owner, gitea.repo, number, f"c{n}")
    response = api.get(f"{repo_path}/issues/{number}/comments", params={})
    assert len(response.json()) == 60
    assert "Link" not in response.headers


def test_comment_bumps_updated_at(
    gitea: GiteaRepoFixture, api: httpx.Client, repo_path: str
) -> None:
    old = gitea.state.now() - 500
    number = gitea.state.add_issue(
        gitea.owner, gitea.repo, "old", created_unix=old, updated_unix=old
    ).number
    before = api.get(f"{repo_path}/issues/{number}").json()["updated_at"]
    api.post(f"{repo_path}/issues/{number}/comments", json={"body": "again"})
    after = api.get(f"{repo_path}/issues/{number}").json()["updated_at"]
    assert after > before


def test_comments_on_missing_issue_are_500(api: httpx.Client, repo_path: str) -> None:
    listed = api.get(f"{repo_path}/issues/777/comments")
    assert_error(listed, 500, "")
    posted = api.post(f"{repo_path}/issues/777/comments", json={"body": "x"})
    assert_error(posted, 500, "")
    assert_error(api.get("/repos/nobody/nothing/issues/1/comments"), 404)


# --- issue labels ----------------------------------------------------------------------------


def test_issue_labels_endpoints(api: httpx.Client, repo_path: str) -> None:
    a, b, c = (create_label(api, repo_path, n) for n in ("a", "b", "c"))
    number = create_issue(api, repo_path, labels=[c])["number"]
    url = f"{repo_path}/issues/{number}/labels"
    added = api.post(url, json={"labels": [a, 424242]})
    assert added.status_code == 200
    assert [lb["name"] for lb in added.json()] == ["a", "c"]  # full list, sorted
    by_name = api.post(url, json={"labels": ["b", "nope"]})
    assert [lb["name"] for lb in by_name.json()] == ["a", "b", "c"]
    assert_error(api.post(url, json={"labels": [a, "b"]}), 400)  # mixed
    assert_error(api.post(url, json={"labels": [True]}), 400)  # other types
    replaced = api.put(url, json={"labels": [b]})
    assert [lb["name"] for lb in replaced.json()] == ["b"]
    assert [lb["name"] for lb in api.get(url).json()] == ["b"]
    assert api.delete(f"{url}/{b}").status_code == 204
    assert api.delete(f"{url}/{a}").status_code == 204  # not on the issue: still 204
    assert_error(api.delete(f"{url}/99999999"), 422)
    api.put(url, json={"labels": [a, c]})
    assert api.delete(url).status_code == 204
    assert api.get(url).json() == []
    assert_error(api.post(f"{repo_path}/issues/999/labels", json={"labels": [a]}), 404)


def test_exclusive_scoped_labels(api: httpx.Client, repo_path: str) -> None:
    ids = []
    for name in ("prio/high", "prio/low"):
        response = api.post(
            f"{repo_path}/labels", json={"name": name, "color": "f00", "exclusive": True}
        )
        ids.append(response.json()["id"])
    number = create_issue(api, repo_path, labels=[ids[0]])["number"]
    after = api.post(f"{repo_path}/issues/{number}/labels", json={"labels": [ids[1]]}).json()
    assert [lb["name"] for lb in after] == ["prio/low"]


# --- timestamps ------------------------------------------------------------------------------


def test_timestamps_use_server_offset(
    gitea: GiteaRepoFixture, api: httpx.Client, repo_path: str
) -> None:
    issue = create_issue(api, repo_path)
    assert issue["created_at"].endswith("+02:00")
    assert STAMP.match(issue["created_at"])
    gitea.state.config.utc_offset = "Z"
    again = api.get(f"{repo_path}/issues/{issue['number']}").json()
    assert again["created_at"].endswith("Z")
    assert api.get(repo_path).json()["mirror_updated"] == "0001-01-01T00:00:00Z"


# --- faults ----------------------------------------------------------------------------------


def test_fault_error_does_no_work(
    gitea: GiteaRepoFixture, api: httpx.Client, repo_path: str
) -> None:
    gitea.add_fault("POST", "/issues$", "error", times=2, status=503)
    for _ in range(2):
        assert_error(api.post(f"{repo_path}/issues", json={"title": "x"}), 503)
    assert gitea.issues() == []
    create_issue(api, repo_path)  # the fault is used up
    assert len(gitea.issues()) == 1
    assert gitea.state.faults == []


def test_fault_lost_response_does_the_work(
    gitea: GiteaRepoFixture, api: httpx.Client, repo_path: str
) -> None:
    gitea.add_fault("POST", "/issues$", "lost_response")
    assert_error(api.post(f"{repo_path}/issues", json={"title": "ghost"}), 500, "")
    assert [i.title for i in gitea.issues()] == ["ghost"]


@pytest.mark.parametrize(("kind", "created"), [("drop", 1), ("drop_before", 0)])
def test_fault_drop(
    gitea: GiteaRepoFixture, api: httpx.Client, repo_path: str, kind: str, created: int
) -> None:
    gitea.add_fault("POST", "/issues$", kind)
    with pytest.raises(httpx.RemoteProtocolError):
        api.post(f"{repo_path}/issues", json={"title": "maybe"})
    assert len(gitea.issues()) == created
    create_issue(api, repo_path)  # the pooled client recovers on a new connection
    assert gitea.state.requests[-2].fault == kind


def test_fault_rate_limit(gitea: GiteaRepoFixture, api: httpx.Client, repo_path: str) -> None:
    gitea.add_fault("*", "/issues", "rate_limit", retry_after=7)
    response = api.get(f"{repo_path}/issues")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.headers["content-type"].startswith("text/html")
    assert api.get(f"{repo_path}/issues").status_code == 200


def test_fault_proxy_status(gitea: GiteaRepoFixture, api: httpx.Client, repo_path: str) -> None:
    gitea.add_fault("POST", "/issues$", "status", status=413)
    response = api.post(f"{repo_path}/issues", json={"title": "big", "body": "x" * 2_000_000})
    assert response.status_code == 413
    assert "413 Request Entity Too Large" in response.text
    assert gitea.issues() == []


def test_fault_delay(gitea: GiteaRepoFixture, api: httpx.Client, repo_path: str) -> None:
    gitea.add_fault("POST", "/issues$", "delay", seconds=0.3)
    started = time.monotonic()
    create_issue(api, repo_path)
    assert time.monotonic() - started >= 0.3
    gitea.add_fault("POST", "/issues$", "delay", seconds=0.3)
    with client_for(gitea, gitea.token, timeout=0.1) as hasty, pytest.raises(httpx.ReadTimeout):
        hasty.post(f"{repo_path}/issues", json={"title": "slow"})
    deadline = time.monotonic() + 2
    while len(gitea.issues()) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(gitea.issues()) == 2  # the server finished the work after the client gave up


def test_fault_control_endpoints_and_request_log(
    gitea: GiteaRepoFixture, api: httpx.Client, repo_path: str
) -> None:
    with httpx.Client(base_url=gitea.url) as control:
        body = {"method": "POST", "path_regex": re.escape(gitea.repo_path) + "/issues$"}
        created = control.post("/_test/faults", json={**body, "kind": "error", "status": 502})
        assert created.status_code == 201
        assert created.json()["params"] == {"status": 502}
        assert control.post("/_test/faults", json={"kind": "nope"}).status_code == 400
        assert api.post(f"{repo_path}/issues", json={"title": "x"}).status_code == 502
        control.post("/_test/faults", json={**body, "kind": "error", "times": None})
        assert len(control.get("/_test/faults").json()) == 1
        assert control.delete("/_test/faults").status_code == 204
        create_issue(api, repo_path, title="logged")
        log = control.get("/_test/requests").json()
        mine = [r for r in log if r["user"] == gitea.login and r["method"] == "POST"]
        assert mine[-1]["json"] == {"title": "logged"}
        assert mine[-1]["status"] == 201
        assert "authorization" not in mine[-1]["headers"]
        assert mine[-2]["fault"] == "error"


def test_request_log_is_capped() -> None:
    state = GiteaState(max_requests=5)
    for n in range(12):
        state.record_request(
            method="GET", path=f"/{n}", query={}, headers={}, json=None, body_text=None
        )
    assert [r.path for r in state.requests] == [f"/{n}" for n in range(7, 12)]


def test_recorded_requests_validate_against_spec(
    gitea: GiteaRepoFixture, api: httpx.Client, repo_path: str
) -> None:
    label_id = create_label(api, repo_path, "bug")
    number = create_issue(api, repo_path, labels=[label_id], body="b")["number"]
    api.get(f"{repo_path}/issues", params={"state": "all", "labels": "bug", "limit": 50})
    api.patch(f"{repo_path}/issues/{number}", json={"state": "closed"})
    api.post(f"{repo_path}/issues/{number}/labels", json={"labels": ["bug"]})
    requests = gitea.requests()
    assert len(requests) == 5
    for r in requests:
        validate_request(r.method, r.path, r.query, r.json)


# --- the spec helper itself ------------------------------------------------------------------


def test_validate_request_catches_mistakes() -> None:
    issues = "/api/v1/repos/o/r/issues"
    validate_request("GET", issues, {"state": "all", "type": "issues", "page": "2"})
    validate_request("POST", issues, None, {"title": "t", "labels": [1]})
    validate_request("GET", issues, {"token": "x"})
    cases: list[Callable[[], None]] = [
        lambda: validate_request("GET", issues, {"sorted": "x"}),
        lambda: validate_request("GET", issues, {"state": "everything"}),
        lambda: validate_request("GET", issues, {"since": "2026-01-01"}),
        lambda: validate_request("GET", issues, {"token": "x"}, allow_query_auth=False),
        lambda: validate_request("GET", "/api/v1/repos/o/r/labels", {"sort": "x"}),
        lambda: validate_request("PATCH", issues + "/1", None, {"labels": [1]}),
        lambda: validate_request("POST", issues, None, {"body": "no title"}),
        lambda: validate_request("GET", issues + "/abc"),
        lambda: validate_request("GET", "/api/v1/nowhere"),
        lambda: validate_request("PUT", "/api/v1/version"),
    ]
    for case in cases:
        with pytest.raises(SpecError):
            case()


def test_validate_response_catches_mistakes() -> None:
    with pytest.raises(SpecError):
        validate_response("PATCH", "/api/v1/repos/o/r/issues/1", 200, {})
    with pytest.raises(SpecError):
        validate_response("GET", "/api/v1/version", 200, {"version": 1})
    with pytest.raises(SpecError):
        validate_response("GET", "/api/v1/version", 200, {"version": "1", "x": 1}, strict=True)
    with pytest.raises(SpecError):
        validate_response("GET", "/api/v1/repos/o/r", 404, {"message": "x", "url": "u"})
    validate_response("GET", "/api/v1/repos/issues/search", 200, [])
    validate_response("POST", "/api/v1/repos/o/r/issues", 403, None)


def test_value_rules() -> None:
    assert normalize_color(" #ABC ") == "#aabbcc"
    assert ellipsis_display_string("\ufffd" + "a" * 300, 255).endswith("...")


# --- running as a program --------------------------------------------------------------------


def test_module_entry_point_runs_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.lab.gitea",
            "--port",
            "0",
            "--owner",
            "acme",
            "--repo",
            "app",
            "--token",
            "t0k",
            "--org",
            "--user-login",
            "bot",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("ready http://127.0.0.1:")
        url = line.split(" ", 1)[1]
        headers = {"Authorization": "token t0k"}
        assert httpx.get(f"{url}/api/v1/user", headers=headers).json()["login"] == "bot"
        repo = httpx.get(f"{url}/api/v1/repos/acme/app", headers=headers).json()
        assert repo["permissions"]["push"] is True
        assert httpx.get(f"{url}/api/v1/orgs/acme").status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
