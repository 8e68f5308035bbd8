"""pytest fixtures for the fake Gitea; load with `pytest_plugins = ["tests.lab.gitea.fixtures"]`.

One server per session, and per test a fresh `gitea` fixture: its own user, token and repo
with unique names, so tests cannot see each other's issues through the repo-scoped
endpoints. `/repos/issues/search` is server-wide, so
filter its results by `owner=`. Faults are server-wide too: scope their path regex to the
test's repo (`gitea.add_fault` does that) and they are cleared after every test.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from .server import GiteaTestServer
from .state import Fault, GiteaState, RecordedRequest

__all__ = ["GiteaRepoFixture", "gitea", "gitea_org", "gitea_server", "make_gitea_repo"]


@dataclass(frozen=True)
class GiteaRepoFixture:
    """A fresh user + token + repo on the shared server.

    `url` is the root URL (no /api/v1) — what the product's config calls the Gitea base URL.
    `login` owns `token`; `owner` owns the repo (== login, or an org with login as member).
    """

    url: str
    token: str
    owner: str
    repo: str
    login: str
    state: GiteaState
    server: GiteaTestServer
    is_org: bool = False

    @property
    def api_url(self) -> str:
        """`url` + "/api/v1"."""
        return self.url + "/api/v1"

    @property
    def repo_path(self) -> str:
        """Request path prefix of this repo, e.g. /api/v1/repos/u-1a2b/r-1a2b."""
        return f"/api/v1/repos/{self.owner}/{self.repo}"

    @property
    def headers(self) -> dict[str, str]:
        """Authorization header for `token`."""
        return {"Authorization": f"token {self.token}"}

    def add_fault(
        self, method: str, path_suffix_regex: str, kind: str, times: int | None = 1, **params: Any
    ) -> Fault:
        """A fault limited to this repo: regex is `re.escape(repo_path) + path_suffix_regex`.

        E.g. `gitea.add_fault("POST", "/issues$", "lost_response")`.
        """
        regex = re.escape(self.repo_path) + path_suffix_regex
        return self.state.add_fault(method, regex, kind, times, **params)

    def requests(self) -> list[RecordedRequest]:
        """Recorded requests authenticated as this fixture's user (oldest first)."""
        return [r for r in self.state.requests if r.user == self.login]

    def issues(self) -> list[Any]:
        """Snapshot of this repo's issues (see GiteaState.issues)."""
        return self.state.issues(self.owner, self.repo)


def make_gitea_repo(
    server: GiteaTestServer, *, org: bool = False, scopes: list[str] | None = None, **flags: Any
) -> GiteaRepoFixture:
    """Create a uniquely named user/token/repo (repo owned by an org when `org=True`)."""
    suffix = uuid.uuid4().hex[:10]
    login, token = f"bot-{suffix}", f"tok-{uuid.uuid4().hex}"
    state = server.state
    state.add_user(login, token, scopes)
    owner = login
    if org:
        owner = f"org-{suffix}"
        state.add_org(owner, members=[login])
    repo = f"repo-{suffix}"
    state.add_repo(owner, repo, **flags)
    return GiteaRepoFixture(server.url, token, owner, repo, login, state, server, org)


@pytest.fixture(scope="session")
def gitea_server() -> Iterator[GiteaTestServer]:
    """One fake Gitea for the whole session, on 127.0.0.1 and a free port."""
    with GiteaTestServer() as server:
        yield server


@pytest.fixture
def gitea(gitea_server: GiteaTestServer) -> Iterator[GiteaRepoFixture]:
    """A fresh user-owned repo; server settings and faults are reset afterwards."""
    yield from _scoped(gitea_server, org=False)


@pytest.fixture
def gitea_org(gitea_server: GiteaTestServer) -> Iterator[GiteaRepoFixture]:
    """Like `gitea`, but the repo belongs to an org of which the token user is a member."""
    yield from _scoped(gitea_server, org=True)


def _scoped(server: GiteaTestServer, *, org: bool) -> Iterator[GiteaRepoFixture]:
    saved = dataclasses.replace(server.state.config)
    try:
        yield make_gitea_repo(server, org=org)
    finally:
        server.state.clear_faults()
        with server.state.lock:
            server.state.config = saved
