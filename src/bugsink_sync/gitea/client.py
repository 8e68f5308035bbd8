"""A thin async client for the Gitea 1.2x / Forgejo issue API.

Hand-written over httpx (no PyPI client fits: see the README). It knows Gitea's quirks:
pages are capped at 50 whatever is asked, label names are not unique, and label ids
that do not apply are dropped silently from a new issue.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from bugsink_sync.gitea.models import Issue, Label, Repository
from bugsink_sync.http import (
    ApiError,
    AuthError,
    NotFoundError,
    RetryPolicy,
    ServiceClient,
    ServiceError,
    status_error,
)

SERVICE = "Gitea"
PAGE_SIZE = 50  # Gitea's MAX_RESPONSE_ITEMS default; larger limits are clamped to it


def _error(response: httpx.Response, action: str) -> ServiceError:
    fixes = {
        401: "check GITEA_API_TOKEN: create a personal access token in Gitea "
        "(Settings > Applications) with scopes write:issue and read:repository",
        403: "give the token the scope the message names (the sync needs write:issue and "
        "read:repository; doctor also read:user), and its user write access to the "
        "repository's issues",
        404: "check GITEA_URL, GITEA_OWNER and GITEA_REPO, and that the token's user can "
        "see the repository and that its issues are enabled",
        413: "a proxy in front of Gitea refused the request body as too large; raise its "
        "limit (nginx client_max_body_size)",
        422: "see the server's message; this is a request Gitea could not accept",
        423: "the repository is archived; unarchive it or point GITEA_REPO elsewhere",
    }
    fix = fixes.get(response.status_code, "see the server's message and Gitea's log")
    return status_error(SERVICE, response, action, fix)


class GiteaClient(ServiceClient):
    """Labels and issues of one repository (`owner/repo`)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        owner: str,
        repo: str,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.owner = owner
        self.repo = repo
        self._repo_path = f"repos/{quote(owner, safe='')}/{quote(repo, safe='')}"
        super().__init__(
            SERVICE,
            self.base_url + "/api/v1/",
            f"token {token}",
            timeout=timeout,
            retry=retry,
            transport=transport,
            error_for=_error,
            unreachable_fix="check GITEA_URL and that Gitea is running and reachable",
        )

    async def version(self) -> str:
        """The server's version; Forgejo's carries a `+gitea-` suffix."""
        response = await self._requests.send(
            "GET",
            "version",
            headers={"Authorization": ""},  # public; Gitea answers 401 to a bad token even here
            action="reading the version",
        )
        return str(response.json().get("version", "unknown"))

    async def whoami(self) -> str:
        """The login of the token's user."""
        response = await self._requests.send("GET", "user", action="reading the token's user")
        return str(response.json().get("login", "?"))

    async def _probe_write(self, path: str, body: dict[str, Any], what: str) -> None:
        """A write Gitea must refuse for its content (422): proves the permission, changes
        nothing. 401/403 mean the permission is missing and raise AuthError."""
        try:
            await self._requests.send("POST", path, json=body, idempotent=False, action=what)
        except ApiError as exc:
            if exc.status == 422:
                return
            raise
        raise ApiError(SERVICE, f"{what}: Gitea accepted an invalid request", fix="report this")

    async def probe_issue_write(self) -> None:
        """Whether the token may create issues here, without creating one."""
        await self._probe_write(
            f"{self._repo_path}/issues", {"title": ""}, "checking issue write access"
        )

    async def probe_label_write(self) -> None:
        """Whether the token may create labels here, without creating one."""
        body = {"name": "", "color": "not-a-colour"}
        await self._probe_write(f"{self._repo_path}/labels", body, "checking label write access")

    async def repository(self) -> Repository:
        """The target repository."""
        response = await self._requests.send(
            "GET", self._repo_path, action=f"reading repository {self.owner}/{self.repo}"
        )
        return Repository.model_validate(response.json())

    async def labels(self) -> list[Label]:
        """Every label usable in the repository: its own first, then its organisation's."""
        repo_labels = [
            label async for label in self._paged(f"{self._repo_path}/labels", {}, "listing labels")
        ]
        try:
            org_path = f"orgs/{quote(self.owner, safe='')}/labels"
            org_labels = [
                label async for label in self._paged(org_path, {}, "listing organisation labels")
            ]
        except NotFoundError:
            org_labels = []  # the owner is a user, not an organisation
        except AuthError as exc:
            if exc.status != 403:
                raise
            org_labels = []  # no read:organization scope (checked before the owner is)
        return [Label.model_validate(item) for item in [*repo_labels, *org_labels]]

    async def create_label(self, name: str, colour: str) -> Label:
        """Create a repository label. Gitea does not reject duplicate names: look first."""
        response = await self._requests.send(
            "POST",
            f"{self._repo_path}/labels",
            json={"name": name, "color": colour},
            action=f"creating label {name!r}",
        )
        return Label.model_validate(response.json())

    async def create_issue(self, title: str, body: str, label_ids: Sequence[int]) -> Issue:
        """Create an issue. Not retried: if the answer is lost the issue may exist."""
        response = await self._requests.send(
            "POST",
            f"{self._repo_path}/issues",
            json={"title": title, "body": body, "labels": list(label_ids)},
            action="creating an issue",
        )
        return Issue.model_validate(response.json())

    async def add_labels(self, number: int, label_ids: Sequence[int]) -> list[Label]:
        """Add labels to an issue; returns the issue's full label list afterwards."""
        response = await self._requests.send(
            "POST",
            f"{self._repo_path}/issues/{number}/labels",
            json={"labels": list(label_ids)},
            idempotent=True,  # adding a label twice is ignored by Gitea
            action=f"adding labels to issue #{number}",
        )
        return [Label.model_validate(item) for item in response.json()]

    async def set_state(self, number: int, state: str) -> Issue:
        """Open or close an issue (Gitea answers 201; doing it twice is harmless)."""
        response = await self._requests.send(
            "PATCH",
            f"{self._repo_path}/issues/{number}",
            json={"state": state},
            idempotent=True,
            action=f"setting issue #{number} {state}",
        )
        return Issue.model_validate(response.json())

    async def comments(self, number: int) -> list[str]:
        """The bodies of an issue's comments (Gitea does not page this list)."""
        response = await self._requests.send(
            "GET",
            f"{self._repo_path}/issues/{number}/comments",
            action=f"reading comments of #{number}",
        )
        return [str(item.get("body", "")) for item in response.json()]

    async def add_comment(self, number: int, body: str) -> None:
        """Comment on an issue. Not retried: look at `comments` first to stay idempotent."""
        await self._requests.send(
            "POST",
            f"{self._repo_path}/issues/{number}/comments",
            json={"body": body},
            action=f"commenting on issue #{number}",
        )

    async def issues(
        self, *, labels: Sequence[str] = (), state: str = "all"
    ) -> AsyncIterator[Issue]:
        """Every issue (not pull request) of the repository, newest first, page by page."""
        params = {"type": "issues", "state": state}
        if labels:
            params["labels"] = ",".join(labels)
        async for item in self._paged(f"{self._repo_path}/issues", params, "listing issues"):
            yield Issue.model_validate(item)

    async def _paged(
        self, path: str, params: Mapping[str, str], action: str
    ) -> AsyncIterator[dict[str, Any]]:
        """Read every page. `X-Total-Count` says when to stop (an admin may cap pages below
        50); without it a short page is the end. The Link header is absent on label lists."""
        page, seen = 1, 0
        while True:
            query = {**params, "page": str(page), "limit": str(PAGE_SIZE)}
            response = await self._requests.send("GET", path, params=query, action=action)
            items = response.json()
            for item in items:
                yield item
            seen += len(items)
            total = response.headers.get("X-Total-Count", "")
            done = seen >= int(total) if total.isdigit() else len(items) < PAGE_SIZE
            if not items or done:
                return
            page += 1
