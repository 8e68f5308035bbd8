"""A thin async client for Bugsink's canonical API (`/api/canonical/0/`, Bearer token).

Hand-written over httpx: the API is small, and the client must cope with the differences
between Bugsink releases (see `features_from_schema`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from bugsink_sync.bugsink.models import (
    Event,
    Feature,
    Issue,
    Project,
    ResolveOutcome,
    ServerInfo,
)
from bugsink_sync.http import (
    ApiError,
    NotFoundError,
    RetryPolicy,
    ServiceClient,
    ServiceError,
    status_error,
)

SERVICE = "Bugsink"
API_PATH = "/api/canonical/0/"
_TOKEN_FIX = (
    "check BUGSINK_TOKEN; create a token on the Bugsink server with "
    "`bugsink-manage create_auth_token` (the Django-shell DRF recipe does not work)"
)
_CAPABILITY_FIX = (
    "give the token the capability named above (Bugsink 2.6+ tokens are scoped: the sync "
    "needs projects:read, issues:read, events:read and issues:triage), or create a "
    "full-access one with `bugsink-manage create_auth_token`"
)


def _error(response: httpx.Response, action: str) -> ServiceError:
    status = response.status_code
    if status == 401:
        fix = _TOKEN_FIX
    elif status == 403:
        fix = _CAPABILITY_FIX
    elif status == 404 and _is_unimplemented(response):
        fix = (
            "check that BUGSINK_URL is Bugsink's base URL (scheme, host and port, e.g. "
            "https://bugsink.example.com); if it is, this Bugsink is too old for this call"
        )
    else:
        fix = "see the server's message; check Bugsink's own log if it is a server error"
    return status_error(SERVICE, response, action, fix)


def _is_unimplemented(response: httpx.Response) -> bool:
    """Bugsink answers unknown API paths with an HTML 404 (`Unimplemented API endpoint`)."""
    return response.status_code == 404 and "json" not in response.headers.get("content-type", "")


def features_from_schema(schema: Mapping[str, Any]) -> ServerInfo:
    """Version and features from the OpenAPI document; paths are more reliable than the
    version, which every release up to 2.2.0 reports as 1.0.0."""
    paths: Mapping[str, Any] = schema.get("paths") or {}
    info = schema.get("info") or {}
    features: set[Feature] = set()
    for path, operations in paths.items():
        if path.endswith("/resolve/"):
            features.add(Feature.RESOLVE)
        elif path.endswith("/reopen/"):
            features.add(Feature.REOPEN)
        elif path.endswith("/issue-comments/"):
            features.add(Feature.COMMENTS)
        elif path.endswith("/issues/") and _has_query_param(operations, "state"):
            features.add(Feature.STATE_FILTER)
    return ServerInfo(version=str(info.get("version") or "unknown"), features=frozenset(features))


def _has_query_param(operations: Any, name: str) -> bool:
    get = operations.get("get") if isinstance(operations, Mapping) else None
    params = get.get("parameters", []) if isinstance(get, Mapping) else []
    return any(isinstance(p, Mapping) and p.get("name") == name for p in params)


class BugsinkClient(ServiceClient):
    """Reads projects, issues and events; resolves issues. Every method is one concern."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        super().__init__(
            SERVICE,
            self.base_url + API_PATH,
            f"Bearer {token}",
            timeout=timeout,
            retry=retry,
            transport=transport,
            error_for=_error,
            unreachable_fix="check BUGSINK_URL and that Bugsink is running and reachable",
        )

    def issue_url(self, issue_id: str) -> str:
        """The issue's page in Bugsink's UI (the form Bugsink itself uses in alerts)."""
        return f"{self.base_url}/issues/issue/{issue_id}/event/last/"

    async def server_info(self) -> ServerInfo:
        """Version and features, from the schema endpoint (which needs no token)."""
        response = await self._requests.send(
            "GET",
            "schema/",
            params={"format": "json"},
            headers={"Authorization": ""},  # needs no token; a bad one would answer 401 here
            action="reading the API schema",
        )
        return features_from_schema(response.json())

    async def check_token(self) -> None:
        """Raise AuthError unless the token is accepted (the API root needs any valid token)."""
        await self._requests.send("GET", "", action="checking the token")

    async def probe(self, method: str, path: str, body: dict[str, Any] | None) -> None:
        """Send one request as it is (for `doctor`); errors raise as usual."""
        await self._requests.send(
            method, path, json=body, idempotent=False, action=f"probing {path}"
        )

    async def projects(self) -> list[Project]:
        """Every project the token can see (a handful: held in memory)."""
        return [
            Project.model_validate(item)
            async for page in self._pages("projects/", {}, "listing projects")
            for item in page
        ]

    async def unresolved_issues(self, project_id: int) -> AsyncIterator[list[Issue]]:
        """The project's unresolved issues, one page (up to 250) at a time.

        `state=unresolved` is sent for servers that know it; older ones ignore it silently,
        so resolved issues are filtered out here as well.
        """
        params = {"project": str(project_id), "state": "unresolved"}
        async for page in self._pages("issues/", params, f"listing issues of project {project_id}"):
            issues = [Issue.model_validate(item) for item in page]
            yield [issue for issue in issues if not issue.is_resolved]

    async def issue(self, issue_id: str) -> Issue:
        """One issue by UUID."""
        response = await self._requests.send(
            "GET", f"issues/{issue_id}/", action=f"reading issue {issue_id}"
        )
        return Issue.model_validate(response.json())

    async def latest_event(self, issue_id: str) -> Event | None:
        """The newest event of an issue with its raw data, or None if it has none left."""
        listing = await self._requests.send(
            "GET",
            "events/",
            params={"issue": issue_id, "order": "desc"},
            action=f"listing events of issue {issue_id}",
        )
        results = listing.json().get("results") or []
        if not results:
            return None
        event_id = results[0]["id"]
        try:
            detail = await self._requests.send(
                "GET", f"events/{event_id}/", action=f"reading event {event_id}"
            )
        except NotFoundError:
            return None  # removed by retention between the two calls
        return Event.model_validate(detail.json())

    async def comment(self, issue_id: str, text: str) -> bool:
        """Add a comment to the issue's history (2.2.1+); False when the server cannot."""
        try:
            await self._requests.send(
                "POST",
                "issue-comments/",
                json={"issue": issue_id, "comment": text},
                action=f"commenting on issue {issue_id}",
            )
        except NotFoundError as exc:
            if "unimplemented" in exc.server_message.lower():
                return False
            raise
        return True

    async def _action(self, issue_id: str, action: str, done_already: str) -> ResolveOutcome:
        """POST an issue action; "already …" answers mean done, an HTML 404 unsupported."""
        try:
            await self._requests.send(
                "POST",
                f"issues/{issue_id}/{action}/",
                json={},
                idempotent=True,  # repeating an action is harmless: Bugsink answers 400
                action=f"{action} of issue {issue_id}",
            )
        except NotFoundError as exc:
            if "unimplemented" in exc.server_message.lower():
                return ResolveOutcome.UNSUPPORTED
            raise
        except ApiError as exc:
            if exc.status == 400 and done_already in exc.server_message.lower():
                return ResolveOutcome.ALREADY_RESOLVED
            raise
        return ResolveOutcome.RESOLVED

    async def mute(self, issue_id: str) -> ResolveOutcome:
        """Mute the issue (2.2.1+)."""
        return await self._action(issue_id, "mute", "already muted")

    async def reopen(self, issue_id: str) -> ResolveOutcome:
        """Reopen a resolved issue (2.4.0+)."""
        return await self._action(issue_id, "reopen", "not resolved")

    async def resolve(self, issue_id: str) -> ResolveOutcome:
        """Mark the issue resolved. A second resolve is fine; a server too old for it says so."""
        return await self._action(issue_id, "resolve", "already resolved")

    async def _pages(
        self, path: str, params: Mapping[str, str], action: str
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Follow the cursor until `next` is null.

        Only the query of `next` is reused: its host comes from the request's Host header,
        which behind a proxy may not be reachable from here.
        """
        query: Mapping[str, str] = params
        while True:
            response = await self._requests.send("GET", path, params=query, action=action)
            body = response.json()
            yield list(body.get("results") or [])
            next_url = body.get("next")
            if not next_url:
                return
            query = dict(httpx.URL(next_url).params)
