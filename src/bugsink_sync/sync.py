"""One sync run: list unresolved Bugsink issues, create the missing Gitea issues, record
them, resolve them in Bugsink, and report.

The decisions are plain functions (`decide`, `labels_to_create`, `missing_label_ids`); the
run wires them to clients and a store that the caller passes in.
"""

from __future__ import annotations

import difflib
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from bugsink_sync.bugsink import BugsinkClient, Feature, Issue, Project, ResolveOutcome
from bugsink_sync.config import SOURCE_LABEL, ConfigError, ProjectConfig, SyncConfig
from bugsink_sync.gitea import GiteaClient, Label
from bugsink_sync.gitea import Issue as GiteaIssue
from bugsink_sync.http import AuthError, ServiceError, ServiceUnavailable
from bugsink_sync.render import DEFAULT_BODY_BUDGET, find_marker, render_issue
from bugsink_sync.state import INITIALISED, RunLock, StateError, StateStore, SyncRecord, iso_utc

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
    recovered: list[CreatedIssue] = field(default_factory=list)
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


MAX_CONSECUTIVE_FAILURES = 5


def _fatal(exc: Exception) -> bool:
    """Errors that will hit every later call too, so the run stops instead of repeating them."""
    if isinstance(exc, (AuthError, StateError)):
        return True
    return isinstance(exc, ServiceUnavailable) and exc.status is None


def marker_index(issues: Iterable[GiteaIssue]) -> dict[str, GiteaIssue]:
    """Bugsink issue UUID -> the Gitea issue whose body carries its marker (oldest wins)."""
    index: dict[str, GiteaIssue] = {}
    for issue in sorted(issues, key=lambda i: i.number):
        uuid = find_marker(issue.body)
        if uuid:
            index.setdefault(uuid, issue)
    return index


def project_of(body: str) -> str:
    """The project slug from a body's footer (`**Project**: slug`), if it has one."""
    for line in reversed(body.splitlines()):
        if line.startswith("**Project**: "):
            return line.removeprefix("**Project**: ").strip().replace("\\", "")
    return ""


class SyncRun:
    """One run over injected clients and store.

    Crash safety: before a Gitea issue is created its intent is stored, and the issue carries
    a marker with the Bugsink UUID. Whenever the outcome of a create is unclear (an intent
    left by a crash, a lost answer, a store that lost its data) the marker index, built by
    listing the repository's issues, says whether the issue exists: it is adopted, never
    created twice. A Bugsink issue is resolved only after its mapping is recorded.
    """

    def __init__(
        self,
        bugsink: BugsinkClient,
        gitea: GiteaClient,
        store: StateStore,
        config: SyncConfig,
        options: SyncOptions = SyncOptions(),
        lock: RunLock | None = None,
    ) -> None:
        self.bugsink = bugsink
        self.gitea = gitea
        self.store = store
        self.config = config
        self.options = options
        self.lock = lock
        self.report = SyncReport(dry_run=options.dry_run)
        self._label_ids: dict[str, int] = {}
        self._can_resolve = True
        self._index: dict[str, GiteaIssue] | None = None
        self._failures_in_a_row = 0
        self._regressions = 0

    async def run(self) -> SyncReport:
        """Sync every selected project; raise SyncAborted if a service stops the run."""
        started = time.monotonic()
        try:
            selected = select_projects(self.config, self.options.project)
            await self._check_server()
            first_use = await self.store.get_meta(INITIALISED) is None
            projects = await self._bugsink_projects(selected)
            await self._prepare_labels([p for p, _ in projects])
            if not self.options.dry_run:
                await self._reconcile(first_use)
            for project, bugsink_project in projects:
                await self._sync_project(project, bugsink_project)
            self._say_regressions()
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
        pairs = [(p, by_slug[p.slug]) for p in selected if p.slug in by_slug]
        for project in selected:
            if project.slug not in by_slug:
                notice = missing_project_notice(project.slug, sorted(by_slug), self.config.origin)
                self.report.notice(notice)
        if not pairs:
            raise ConfigError(
                f"none of the projects of {self.config.origin} exists in Bugsink (or the token "
                f"cannot see them); Bugsink has: {', '.join(sorted(by_slug)) or 'no projects'}. "
                "Fix: list your projects' slugs in the file BUGSINK_SYNC_CONFIG names"
            )
        return pairs

    async def _prepare_labels(self, projects: Sequence[ProjectConfig]) -> None:
        names = list(dict.fromkeys(n for p in projects for n in self.config.labels_for(p)))
        wanted = {name: self.config.colour_of(name) for name in names}
        existing = await self.gitea.labels()
        missing = labels_to_create(wanted, existing)
        if self.options.dry_run:
            for name in missing:
                log.info("would create Gitea label %r", name)
        else:
            for name, colour in missing.items():
                existing.append(await self.gitea.create_label(name, colour))
                log.info("created Gitea label %r (%s)", name, colour)
        self._label_ids = label_ids(names, existing)

    # --- reconciliation ---------------------------------------------------------------------

    async def _markers(self, *, refresh: bool = False) -> dict[str, GiteaIssue]:
        """The marker index, listed from Gitea once per run (again after an unclear create)."""
        if self._index is None or refresh:
            issues = [i async for i in self.gitea.issues(labels=[SOURCE_LABEL], state="all")]
            self._index = marker_index(issues)
        return self._index

    async def _reconcile(self, first_use: bool) -> None:
        """Settle what an earlier run left unclear, before creating anything."""
        if first_use:
            await self._rebuild_if_lost()
            await self.store.set_meta(INITIALISED, iso_utc(datetime.now(UTC)))
        for uuid in await self.store.pending():
            found = (await self._markers()).get(uuid)
            if await self.store.get(uuid) is not None:
                await self.store.clear_pending(uuid)
            elif found is not None:
                await self._adopt(uuid, found, project_of(found.body))
            else:
                await self.store.clear_pending(uuid)  # never reached Gitea: create it anew

    async def _rebuild_if_lost(self) -> None:
        """An empty store while Gitea holds our issues means the state was lost: restore it
        from the markers before anything is created."""
        index = await self._markers()
        restored = await restore_records(self.store, index)
        if restored:
            self.report.notice(
                f"the state store ({self.store.description}) was empty although Gitea holds "
                f"{len(index)} issue(s) made by bugsink-sync: restored {restored} mapping(s) "
                "from their markers"
            )

    async def _adopt(self, uuid: str, issue: GiteaIssue, project: str) -> None:
        """Record an issue found by its marker instead of creating another."""
        await self.store.complete(
            uuid, SyncRecord(issue.number, datetime.now(UTC), project, issue.title)
        )
        self.report.recovered.append(
            CreatedIssue(
                uuid,
                project,
                issue.title,
                [label.name for label in issue.labels],
                issue.number,
                issue.html_url,
            )
        )
        log.warning("found Gitea issue #%d for %s by its marker: recorded it", issue.number, uuid)

    # --- the issues -------------------------------------------------------------------------

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
            else:
                if decision is Decision.RESOLVE_AGAIN:
                    await self._resolve(issue)
                else:
                    self._regressions += 1
                self.report.skipped += 1
            self._failures_in_a_row = 0
        except (ServiceError, StateError) as exc:
            if _fatal(exc):
                raise
            self._count_failure(project, issue, exc)

    def _count_failure(self, project: ProjectConfig, issue: Issue, exc: Exception) -> None:
        self.report.failed += 1
        self.report.failures.append(Failure(issue.id, project.slug, str(exc)))
        log.error("issue %s of %s failed: %s", issue.id, project.slug, exc)
        self._failures_in_a_row += 1
        if self._failures_in_a_row >= MAX_CONSECUTIVE_FAILURES and isinstance(exc, ServiceError):
            raise ServiceUnavailable(
                exc.service,
                f"{self._failures_in_a_row} issues in a row failed; stopping this run",
                fix=exc.fix,
            ) from exc

    async def _create(self, project: ProjectConfig, issue: Issue) -> None:
        event = await self.bugsink.latest_event(issue.id)
        rendered = render_issue(
            issue,
            event,
            project=project.slug,
            issue_url=self.bugsink.issue_url(issue.id),
            body_budget=self.options.body_budget,
            templates=self.config.issue_templates,
        )
        names = self.config.labels_for(project)
        existing = (await self._markers()).get(issue.id)
        if self.options.dry_run:
            found = CreatedIssue(issue.id, project.slug, rendered.title, names)
            (self.report.created if existing is None else self.report.recovered).append(found)
            return
        if existing is not None:  # made by a run whose record was lost: adopt it
            await self._adopt(issue.id, existing, project.slug)
        else:
            existing = await self._create_once(project, issue, rendered.title, rendered.body, names)
            await self._repair_labels(existing.number, self._ids(names), existing.labels)
        await self._resolve(issue)

    def _ids(self, names: Sequence[str]) -> list[int]:
        return [self._label_ids[name] for name in names if name in self._label_ids]

    async def _create_once(
        self, project: ProjectConfig, issue: Issue, title: str, body: str, names: list[str]
    ) -> GiteaIssue:
        """Intent, create, record. An unclear create is looked up by its marker, not repeated."""
        if self.lock is not None:
            self.lock.check()
        await self.store.mark_pending(issue.id, project.slug)
        try:
            created = await self.gitea.create_issue(title, body, self._ids(names))
        except ServiceUnavailable:
            found = (await self._markers(refresh=True)).get(issue.id)
            if found is None:
                raise  # not in Gitea: the intent stays, the next run creates it
            await self._adopt(issue.id, found, project.slug)
            return found
        record = SyncRecord(created.number, datetime.now(UTC), project.slug, created.title)
        await self.store.complete(issue.id, record)
        if self._index is not None:
            self._index[issue.id] = created
        self.report.created.append(
            CreatedIssue(issue.id, project.slug, title, names, created.number, created.html_url)
        )
        log.info("created Gitea issue #%d for %s: %s", created.number, issue.id, title)
        return created

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
        """Resolve in Bugsink; only ever called once the mapping is recorded."""
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

    def _say_regressions(self) -> None:
        if self._regressions:
            self.report.notice(
                f"{self._regressions} synced issue(s) have had new events since they were "
                "synced (regressions); their Gitea issues were left as they are"
            )


def _created(issue: GiteaIssue) -> datetime:
    return issue.created_at.astimezone(UTC) if issue.created_at else datetime.now(UTC)


async def restore_records(
    store: StateStore, index: Mapping[str, GiteaIssue], *, correct: bool = False
) -> int:
    """Write the mapping of every marked Gitea issue the store lacks (or, with `correct`,
    records a different issue for); returns how many were written."""
    written = 0
    for uuid, issue in index.items():
        current = await store.get(uuid)
        if current is None or (correct and current.gitea_issue_number != issue.number):
            record = SyncRecord(issue.number, _created(issue), project_of(issue.body), issue.title)
            await store.put(uuid, record)
            written += 1
    return written


async def rebuild_state(gitea: GiteaClient, store: StateStore) -> tuple[int, int]:
    """Rebuild the mapping from the markers of every issue in the repository (whatever its
    labels); returns (issues with a marker, mappings written)."""
    index = marker_index([issue async for issue in gitea.issues(state="all")])
    written = await restore_records(store, index, correct=True)
    await store.set_meta(INITIALISED, iso_utc(datetime.now(UTC)))
    return len(index), written


def missing_project_notice(slug: str, available: Sequence[str], origin: str) -> str:
    """Say that a configured project is missing, with the closest slug Bugsink has."""
    close = difflib.get_close_matches(slug, available, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"Bugsink has no project {slug!r} (from {origin}), or the token cannot see it.{hint}"


async def run_sync(
    bugsink: BugsinkClient,
    gitea: GiteaClient,
    store: StateStore,
    config: SyncConfig,
    options: SyncOptions = SyncOptions(),
    lock: RunLock | None = None,
) -> SyncReport:
    """Run one sync and return its report (raises SyncAborted when it cannot complete)."""
    return await SyncRun(bugsink, gitea, store, config, options, lock).run()
