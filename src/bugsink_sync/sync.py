"""One sync run: list unresolved Bugsink issues, create the missing Gitea issues, record
them, resolve them in Bugsink, and report.

The decisions are plain functions (`decide`, `labels_to_create`, `missing_label_ids`); the
run wires them to clients and a store that the caller passes in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from bugsink_sync.bugsink import BugsinkClient, Feature, Issue, Project, ResolveOutcome
from bugsink_sync.config import ConfigError, ProjectConfig, SyncConfig
from bugsink_sync.gitea import GiteaClient, Label
from bugsink_sync.http import AuthError, ServiceError, ServiceUnavailable
from bugsink_sync.render import DEFAULT_BODY_BUDGET, render_issue
from bugsink_sync.state import StateError, StateStore, SyncRecord

log = logging.getLogger("bugsink_sync.sync")


# --- the report -----------------------------------------------------------------------------


@dataclass
class CreatedIssue:
    """A Gitea issue made (or, in a dry run, that would be made) for a Bugsink issue."""

    bugsink_id: str
    project: str
    title: str
    labels: list[str]
    gitea_number: int | None = None
    url: str | None = None


@dataclass
class Failure:
    """A Bugsink issue that could not be synced this run, and why."""

    bugsink_id: str
    project: str
    reason: str


@dataclass
class SyncReport:
    """What a run did. `summary()` is the seed's API shape."""

    synced: int = 0
    skipped: int = 0
    failed: int = 0
    duration_ms: int = 0
    dry_run: bool = False
    created: list[CreatedIssue] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    error: str | None = None

    def summary(self) -> dict[str, int]:
        """`{"synced", "skipped", "failed", "duration_ms"}`."""
        return {
            "synced": self.synced,
            "skipped": self.skipped,
            "failed": self.failed,
            "duration_ms": self.duration_ms,
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything, for `--json`."""
        return asdict(self)

    def notice(self, text: str) -> None:
        """Say something once per run (and log it)."""
        if text not in self.notices:
            self.notices.append(text)
            log.warning(text)


class SyncAborted(Exception):
    """The run stopped early (a service refused or went away); `report` says how far it got."""

    def __init__(self, report: SyncReport, cause: Exception) -> None:
        self.report = report
        self.cause = cause
        super().__init__(str(cause))


# --- pure decisions ---------------------------------------------------------------------------


class Decision(StrEnum):
    """What to do with one unresolved Bugsink issue."""

    CREATE = "create"
    SKIP = "skip"
    RESOLVE_AGAIN = "resolve_again"


def decide(issue: Issue, record: SyncRecord | None) -> Decision:
    """Create when unrecorded. A recorded issue with no event since it was synced was not
    resolved last time (e.g. Bugsink refused), so resolving it again is safe; one with newer
    events is a regression, which is left alone."""
    if record is None:
        return Decision.CREATE
    if issue.last_seen <= record.synced_at:
        return Decision.RESOLVE_AGAIN
    return Decision.SKIP


def labels_to_create(wanted: Mapping[str, str], existing: Iterable[Label]) -> dict[str, str]:
    """Wanted labels (name -> colour) that no existing label has the exact name of."""
    names = {label.name for label in existing}
    return {name: colour for name, colour in wanted.items() if name not in names}


def label_ids(names: Sequence[str], existing: Iterable[Label]) -> dict[str, int]:
    """Name -> id; where Gitea holds duplicate names, the first listed (repository's) wins."""
    ids: dict[str, int] = {}
    for label in existing:
        if label.name in names:
            ids.setdefault(label.name, label.id)
    return ids


def missing_label_ids(sent: Iterable[int], applied: Iterable[Label]) -> list[int]:
    """Ids sent with a new issue that Gitea silently dropped."""
    have = {label.id for label in applied}
    return [label_id for label_id in sent if label_id not in have]


def select_projects(config: SyncConfig, only: str | None) -> tuple[ProjectConfig, ...]:
    """The configured projects of this run; `only` must name a configured one."""
    if only is None:
        return config.projects
    chosen = config.project(only)
    if chosen is None:
        known = ", ".join(p.slug for p in config.projects)
        raise ConfigError(f"--project {only!r} is not a configured project (configured: {known})")
    return (chosen,)


# --- the run -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncOptions:
    """How to run: `dry_run` changes nothing anywhere; `project` limits to one slug."""

    dry_run: bool = False
    project: str | None = None
    body_budget: int = DEFAULT_BODY_BUDGET


def _fatal(exc: Exception) -> bool:
    """Errors that will hit every later call too, so the run stops instead of repeating them."""
    if isinstance(exc, (AuthError, StateError)):
        return True
    return isinstance(exc, ServiceUnavailable) and exc.status is None


class SyncRun:
    """One run over injected clients and store."""

    def __init__(
        self,
        bugsink: BugsinkClient,
        gitea: GiteaClient,
        store: StateStore,
        config: SyncConfig,
        options: SyncOptions = SyncOptions(),
    ) -> None:
        self.bugsink = bugsink
        self.gitea = gitea
        self.store = store
        self.config = config
        self.options = options
        self.report = SyncReport(dry_run=options.dry_run)
        self._label_ids: dict[str, int] = {}
        self._can_resolve = True

    async def run(self) -> SyncReport:
        """Sync every selected project; raise SyncAborted if a service stops the run."""
        started = time.monotonic()
        try:
            selected = select_projects(self.config, self.options.project)
            await self._check_server()
            projects = await self._bugsink_projects(selected)
            await self._prepare_labels([p for p, _ in projects])
            for project, bugsink_project in projects:
                await self._sync_project(project, bugsink_project)
        except (ServiceError, StateError) as exc:
            self.report.error = str(exc)
            raise SyncAborted(self._finish(started), exc) from exc
        return self._finish(started)

    def _finish(self, started: float) -> SyncReport:
        self.report.duration_ms = round((time.monotonic() - started) * 1000)
        return self.report

    async def _check_server(self) -> None:
        info = await self.bugsink.server_info()
        await self.bugsink.check_token()
        if not info.supports(Feature.RESOLVE):
            self._can_resolve = False
            self.report.notice(
                f"Bugsink {info.version} cannot resolve issues through its API (added in "
                "2.2.1): Gitea issues are created, the Bugsink issues stay unresolved. "
                "Upgrade Bugsink to resolve them."
            )

    async def _bugsink_projects(
        self, selected: Sequence[ProjectConfig]
    ) -> list[tuple[ProjectConfig, Project]]:
        by_slug = {p.slug: p for p in await self.bugsink.projects()}
        configured = {p.slug for p in self.config.projects}
        ignored = sorted(set(by_slug) - configured)
        if ignored and self.options.project is None:
            log.info("Bugsink projects not configured, left alone: %s", ", ".join(ignored))
        pairs = []
        for project in selected:
            if project.slug in by_slug:
                pairs.append((project, by_slug[project.slug]))
            else:
                self.report.notice(
                    f"Bugsink has no project {project.slug!r} (or the token cannot see it); "
                    "check the slug in the configuration"
                )
        return pairs

    async def _prepare_labels(self, projects: Sequence[ProjectConfig]) -> None:
        names = list(dict.fromkeys(n for p in projects for n in self.config.labels_for(p)))
        wanted = {name: self.config.colour_of(name) for name in names}
        existing = await self.gitea.labels()
        missing = labels_to_create(wanted, existing)
        if self.options.dry_run:
            for name in missing:
                self.report.notice(f"would create Gitea label {name!r}")
        else:
            for name, colour in missing.items():
                existing.append(await self.gitea.create_label(name, colour))
                log.info("created Gitea label %r (%s)", name, colour)
        self._label_ids = label_ids(names, existing)

    async def _sync_project(self, project: ProjectConfig, bugsink_project: Project) -> None:
        async for page in self.bugsink.unresolved_issues(bugsink_project.id):
            for issue in page:
                await self._sync_issue(project, issue)

    async def _sync_issue(self, project: ProjectConfig, issue: Issue) -> None:
        try:
            decision = decide(issue, await self.store.get(issue.id))
            if decision is Decision.CREATE:
                await self._create(project, issue)
                self.report.synced += 1
            elif decision is Decision.RESOLVE_AGAIN:
                await self._resolve(issue)
                self.report.skipped += 1
            else:
                self.report.skipped += 1
        except (ServiceError, StateError) as exc:
            if _fatal(exc):
                raise
            self.report.failed += 1
            self.report.failures.append(Failure(issue.id, project.slug, str(exc)))
            log.error("issue %s of %s failed: %s", issue.id, project.slug, exc)

    async def _create(self, project: ProjectConfig, issue: Issue) -> None:
        event = await self.bugsink.latest_event(issue.id)
        rendered = render_issue(
            issue,
            event,
            project=project.slug,
            issue_url=self.bugsink.issue_url(issue.id),
            body_budget=self.options.body_budget,
        )
        names = self.config.labels_for(project)
        created = CreatedIssue(issue.id, project.slug, rendered.title, names)
        self.report.created.append(created)
        if self.options.dry_run:
            return
        ids = [self._label_ids[name] for name in names if name in self._label_ids]
        gitea_issue = await self.gitea.create_issue(rendered.title, rendered.body, ids)
        created.gitea_number, created.url = gitea_issue.number, gitea_issue.html_url
        await self.store.put(
            issue.id,
            SyncRecord(gitea_issue.number, datetime.now(UTC), project.slug, gitea_issue.title),
        )
        log.info("created Gitea issue #%d for %s: %s", gitea_issue.number, issue.id, rendered.title)
        await self._repair_labels(gitea_issue.number, ids, gitea_issue.labels)
        await self._resolve(issue)

    async def _repair_labels(self, number: int, sent: list[int], applied: list[Label]) -> None:
        """Gitea drops label ids it will not apply without an error: add them again, and say so
        if they still do not stick (usually: the token's user may not write issues)."""
        dropped = missing_label_ids(sent, applied)
        if not dropped:
            return
        now = await self.gitea.add_labels(number, dropped)
        if missing_label_ids(dropped, now):
            self.report.notice(
                f"Gitea did not apply every label to issue #{number}; give the token's user "
                "write access to the repository's issues"
            )

    async def _resolve(self, issue: Issue) -> None:
        if self.options.dry_run or not self._can_resolve:
            return
        try:
            outcome = await self.bugsink.resolve(issue.id)
        except AuthError as exc:
            self._can_resolve = False  # e.g. the token lacks issues:triage: keep syncing
            self.report.notice(f"resolving in Bugsink is not allowed: {exc}")
            return
        if outcome is ResolveOutcome.UNSUPPORTED:
            self._can_resolve = False
            self.report.notice("this Bugsink cannot resolve issues through its API")


async def run_sync(
    bugsink: BugsinkClient,
    gitea: GiteaClient,
    store: StateStore,
    config: SyncConfig,
    options: SyncOptions = SyncOptions(),
) -> SyncReport:
    """Run one sync and return its report (raises SyncAborted when it cannot complete)."""
    return await SyncRun(bugsink, gitea, store, config, options).run()
