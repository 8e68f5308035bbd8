"""`bugsink-sync doctor`: check everything the sync needs, in order, and say what to fix.

Nothing is created or changed anywhere. Write permissions are probed with requests that
the server refuses for their content (an issue without a title, a label without a valid
colour, an action on an issue that does not exist): a refusal for the content means the
permission is there, a 401/403 means it is not.
"""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from bugsink_sync.bugsink import BugsinkClient, ServerInfo
from bugsink_sync.config import ConfigError, Settings, SyncConfig, load_settings, load_sync_config
from bugsink_sync.connections import open_store
from bugsink_sync.gitea import GiteaClient
from bugsink_sync.http import NO_RETRY, ApiError, AuthError, ServiceError

NO_ISSUE = "00000000-0000-0000-0000-000000000000"
# Bugsink 2.6 capabilities the sync uses, and a request that needs each without changing
# anything (the path of a missing issue: 404 or 400 when allowed, 403 when not).
CAPABILITIES: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "projects:read": ("GET", "projects/", None),
    "issues:read": ("GET", f"issues/{NO_ISSUE}/", None),
    "events:read": ("GET", "events/", None),
    "issues:triage": ("POST", f"issues/{NO_ISSUE}/resolve/", {}),
    "issues:comment": ("POST", "issue-comments/", {"issue": NO_ISSUE, "comment": "doctor"}),
}


class Status(StrEnum):
    """How one check ended."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class CheckResult:
    """One line of the doctor's report."""

    name: str
    status: Status
    detail: str
    fix: str = ""


@dataclass
class Doctor:
    """Runs the checks in order; a failed prerequisite skips what depends on it."""

    env: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        self.results: list[CheckResult] = []

    def _add(self, name: str, status: Status, detail: str, fix: str = "") -> bool:
        self.results.append(CheckResult(name, status, detail, fix))
        return status is not Status.FAIL

    async def run(self) -> list[CheckResult]:
        """Every check, in the order a person would debug."""
        loaded = self._configuration()
        if loaded is None:
            return self.results
        settings, config = loaded
        async with BugsinkClient(
            settings.bugsink_url,
            settings.bugsink_token.get_secret_value(),
            timeout=min(settings.http_timeout, 10),
            retry=NO_RETRY,
        ) as bugsink:
            if await self._bugsink(bugsink):
                await self._projects(bugsink, config)
        async with GiteaClient(
            settings.gitea_url,
            settings.gitea_api_token.get_secret_value(),
            settings.gitea_owner,
            settings.gitea_repo,
            timeout=min(settings.http_timeout, 10),
            retry=NO_RETRY,
        ) as gitea:
            if await self._gitea(gitea):
                await self._labels(gitea, config)
        await self._store(settings)
        self._enabled(settings)
        return self.results

    def _configuration(self) -> tuple[Settings, SyncConfig] | None:
        try:
            settings = load_settings(self.env)
            config = load_sync_config(settings.config_file)
        except ConfigError as exc:
            detail = str(exc).removeprefix("configuration: ")
            self._add("configuration", Status.FAIL, detail, "see the README's Configuration table")
            return None
        projects = ", ".join(p.slug for p in config.projects)
        self._add("configuration", Status.OK, f"valid; {config.origin}; projects: {projects}")
        return settings, config

    async def _guard(self, name: str, call: Callable[[], Awaitable[str]]) -> bool:
        try:
            return self._add(name, Status.OK, await call())
        except ServiceError as exc:
            return self._add(name, Status.FAIL, exc.what + _status(exc), exc.fix)

    async def _bugsink(self, bugsink: BugsinkClient) -> bool:
        info: list[ServerInfo] = []

        async def reach() -> str:
            info.append(await bugsink.server_info())
            return f"{bugsink.base_url} answers: Bugsink {info[0].version}"

        if not await self._guard("Bugsink reachable", reach):
            return False

        async def token() -> str:
            await bugsink.check_token()
            return "the token is accepted"

        if not await self._guard("Bugsink token", token):
            return False
        features = sorted(f.value for f in info[0].features)
        missing = {
            "resolve": "2.2.1",
            "comments": "2.2.1",
            "reopen": "2.4.0",
            "state_filter": "2.6.2",
        }
        absent = [
            f"{name} ({version}+)" for name, version in missing.items() if name not in features
        ]
        status = Status.WARN if absent else Status.OK
        detail = f"offers {', '.join(features) or 'no optional features'}"
        self._add(
            "Bugsink features",
            status,
            detail + (f"; lacks {', '.join(absent)}" if absent else ""),
            "upgrade Bugsink for what it lacks" if absent else "",
        )
        return await self._capabilities(bugsink)

    async def _capabilities(self, bugsink: BugsinkClient) -> bool:
        refused = []
        for capability, (method, path, body) in CAPABILITIES.items():
            try:
                await bugsink.probe(method, path, body)
            except AuthError as exc:
                if exc.status == 403:
                    refused.append(capability)
            except ServiceError:
                pass  # 400/404: the request was allowed and refused for its content
        if refused:
            return self._add(
                "Bugsink token capabilities",
                Status.FAIL
                if "issues:read" in refused or "projects:read" in refused
                else Status.WARN,
                f"the token lacks {', '.join(refused)}",
                "create a token with those capabilities, or a full-access one with "
                "`bugsink-manage create_auth_token`",
            )
        return self._add("Bugsink token capabilities", Status.OK, ", ".join(CAPABILITIES))

    async def _projects(self, bugsink: BugsinkClient, config: SyncConfig) -> None:
        try:
            slugs = sorted(p.slug for p in await bugsink.projects())
        except ServiceError as exc:
            self._add("Bugsink projects", Status.FAIL, exc.what + _status(exc), exc.fix)
            return
        for project in config.projects:
            if project.slug in slugs:
                self._add(f"project {project.slug}", Status.OK, "exists in Bugsink")
                continue
            close = difflib.get_close_matches(project.slug, slugs, n=1, cutoff=0.8)
            hint = f"did you mean {close[0]!r}? " if close else ""
            self._add(
                f"project {project.slug}",
                Status.FAIL,
                f"not in Bugsink ({config.origin}); Bugsink has: {', '.join(slugs) or 'none'}",
                f"{hint}correct the slug in BUGSINK_SYNC_CONFIG",
            )

    async def _gitea(self, gitea: GiteaClient) -> bool:
        async def reach() -> str:
            version = await gitea.version()
            kind = "Forgejo" if "+gitea-" in version else "Gitea"
            return f"{gitea.base_url} answers: {kind} {version}"

        async def token() -> str:
            try:
                return f"the token is accepted (user {await gitea.whoami()})"
            except AuthError as exc:
                if exc.status != 403:
                    raise
            await gitea.repository()  # needs only read:repository: a bad token gets 401 here
            return "the token is accepted (without read:user its user is not shown)"

        async def repository() -> str:
            repo = await gitea.repository()
            if repo.archived or not repo.has_issues:
                why = "is archived" if repo.archived else "has issues disabled"
                raise ApiError(
                    "Gitea",
                    f"repository {repo.full_name} {why}",
                    fix="unarchive it or enable its issues",
                )
            return f"{repo.full_name} exists with issues enabled"

        async def may_write() -> str:
            await gitea.probe_issue_write()
            return "the token may create issues (checked without creating one)"

        for name, check in (
            ("Gitea reachable", reach),
            ("Gitea token", token),
            ("Gitea repository", repository),
            ("Gitea issue permission", may_write),
        ):
            if not await self._guard(name, check):
                return False
        return True

    async def _labels(self, gitea: GiteaClient, config: SyncConfig) -> None:
        names = list(dict.fromkeys(n for p in config.projects for n in config.labels_for(p)))
        existing = {label.name for label in await gitea.labels()}
        missing = [name for name in names if name not in existing]
        if not missing:
            self._add("Gitea labels", Status.OK, f"all {len(names)} present")
            return
        try:
            await gitea.probe_label_write()
        except AuthError as exc:
            self._add(
                "Gitea labels",
                Status.FAIL,
                f"missing {', '.join(missing)} and the token may not create labels" + _status(exc),
                exc.fix,
            )
            return
        self._add(
            "Gitea labels",
            Status.OK,
            f"{len(names) - len(missing)} present; {', '.join(missing)} will be created",
        )

    async def _store(self, settings: Settings) -> None:
        try:
            store = open_store(settings, read_only=True)
            try:
                count = await store.count()
                await store.get_meta("initialised")
            finally:
                await store.aclose()
        except Exception as exc:  # a StateError, or the driver's own error
            self._add(
                "state store", Status.FAIL, str(exc), "check REDIS_URL or BUGSINK_SYNC_SQLITE_PATH"
            )
            return
        if settings.redis_url is None and not settings.sqlite_path.exists():
            detail = f"{store.description} does not exist yet; the first sync creates it"
            self._add("state store", Status.OK, detail)
            return
        self._add("state store", Status.OK, f"{store.description} readable; {count} mapping(s)")

    def _enabled(self, settings: Settings) -> None:
        if settings.enabled:
            self._add("sync enabled", Status.OK, "BUGSINK_SYNC_ENABLED is true")
        else:
            self._add(
                "sync enabled",
                Status.WARN,
                "BUGSINK_SYNC_ENABLED is not true: `sync` refuses and `serve` schedules nothing",
                "set BUGSINK_SYNC_ENABLED=true where this should sync",
            )


def _status(exc: ServiceError) -> str:
    if exc.status is None:
        return ""
    return (
        f" (HTTP {exc.status}: {exc.server_message})"
        if exc.server_message
        else f" (HTTP {exc.status})"
    )


def healthy(results: list[CheckResult]) -> bool:
    """True unless a check failed (warnings are allowed)."""
    return all(result.status is not Status.FAIL for result in results)


def as_json(results: list[CheckResult]) -> dict[str, Any]:
    """The `--json` document."""
    return {"ok": healthy(results), "checks": [asdict(r) for r in results]}
