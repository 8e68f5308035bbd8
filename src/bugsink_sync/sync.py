"""One sync run: list unresolved Bugsink issues, create the missing Gitea issues, record
them, resolve them in Bugsink, follow regressions and (in two-way mode) Gitea's state, and
report. The decisions are plain functions in `policy`; the run wires them to the clients and
the store that the caller passes in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol
from uuid import uuid4

from bugsink_sync.bugsink import BugsinkClient, Event, Feature, Issue, Project, ResolveOutcome
from bugsink_sync.config import ConfigError, ProjectConfig, SyncConfig
from bugsink_sync.gitea import GiteaClient, Label
from bugsink_sync.gitea import Issue as GiteaIssue
from bugsink_sync.http import AuthError, NotFoundError, ServiceError, ServiceUnavailable
from bugsink_sync.policy import (
    Action,
    GiteaOutcome,
    backlink_text,
    below_minimum,
    decide,
    filtered_out,
    gitea_outcome,
    label_ids,
    labels_to_create,
    marker_index,
    missing_label_ids,
    missing_project_notice,
    project_of,
    regression_comment,
    regression_key,
    select_projects,
)
from bugsink_sync.render import DEFAULT_BODY_BUDGET, render_issue
from bugsink_sync.report import CreatedIssue, Failure, SyncAborted, SyncReport
from bugsink_sync.state import (
    INITIALISED,
    CorruptRecord,
    RunLock,
    StateError,
    StateStore,
    SyncRecord,
    iso_utc,
)

log = logging.getLogger("bugsink_sync.sync")

__all__ = ["SyncAborted", "SyncOptions", "SyncReport", "SyncRun", "rebuild_state", "run_sync"]


@dataclass(frozen=True)
class SyncOptions:
    """How to run: `dry_run` changes nothing anywhere; `project` limits to one slug;
    `issue` to one Bugsink issue (a webhook); `backfill` lifts the cap on new issues."""

    dry_run: bool = False
    project: str | None = None
    issue: str | None = None
    backfill: bool = False
    body_budget: int = DEFAULT_BODY_BUDGET
    settle_seconds: float = 60.0  # how long an unclear create may still land in Gitea


class Progress(Protocol):
    """Someone watching a run (a terminal's progress bar): told of projects and issues."""

    def project(self, slug: str) -> None:
        """A project's issues are being looked at."""

    def issue(self) -> None:
        """One more issue was looked at."""


MAX_CONSECUTIVE_FAILURES = 5
_FEATURE_NOTES = {
    Feature.COMMENTS: "no back-link comments (2.2.1+)",
    Feature.REOPEN: "no reopening from Gitea (2.4.0+)",
    Feature.STATE_FILTER: "no state filter, so resolved issues are filtered here (2.6.2+)",
}


def _fatal(exc: Exception) -> bool:
    """Errors that will hit every later call too, so the run stops instead of repeating them."""
    if isinstance(exc, CorruptRecord):
        return False  # one bad value: that issue fails, the others go on
    if isinstance(exc, (AuthError, StateError)):
        return True
    return isinstance(exc, ServiceUnavailable) and exc.status is None


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
        progress: Progress | None = None,
    ) -> None:
        self.progress = progress
        self.bugsink = bugsink
        self.gitea = gitea
        self.store = store
        self.config = config
        self.policy = config.sync
        self.options = options
        self.lock = lock
        self.report = SyncReport(run_id=uuid4().hex[:12], dry_run=options.dry_run)
        self._label_ids: dict[str, int] = {}
        self._features: frozenset[Feature] = frozenset(Feature)
        self._can_resolve = True
        self._can_comment = True
        self._index: dict[str, GiteaIssue] | None = None
        self._failures_in_a_row = 0
        self._new_issues = 0

    def _log(self, level: int, message: str, *args: object, **fields: str) -> None:
        """Log with the run id, and the project and issue when there are any (JSON logs
        carry them as fields)."""
        log.log(level, message, *args, extra={"run_id": self.report.run_id, **fields})

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
            if self.options.issue is not None:
                await self._sync_one(self.options.issue, projects)
            else:
                for project, bugsink_project in projects:
                    await self._sync_project(project, bugsink_project)
            if self.policy.two_way and not self.options.dry_run:
                await self._follow_reopened()
            self._closing_notices()
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
        self._features = info.features
        if not info.supports(Feature.RESOLVE):
            self._can_resolve = False
            self.report.notice(
                f"Bugsink {info.version} cannot resolve issues through its API (added in "
                "2.2.1): Gitea issues are created, the Bugsink issues stay unresolved. "
                "Upgrade Bugsink to resolve them."
            )
        self._can_comment = info.supports(Feature.COMMENTS) and self.policy.backlinks
        missing = [
            note
            for feature, note in _FEATURE_NOTES.items()
            if not info.supports(feature) and (feature is not Feature.REOPEN or self.policy.two_way)
        ]
        if missing and info.supports(Feature.RESOLVE):
            self.report.notice(f"Bugsink {info.version}: " + "; ".join(missing))

    async def _bugsink_projects(
        self, selected: Sequence[ProjectConfig]
    ) -> list[tuple[ProjectConfig, Project]]:
        by_slug = {p.slug: p for p in await self.bugsink.projects()}
        configured = {p.slug for p in self.config.projects}
        ignored = sorted(set(by_slug) - configured)
        if ignored and self.options.project is None:
            self._log(
                logging.INFO, "Bugsink projects not configured, left alone: %s", ", ".join(ignored)
            )
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
                self._log(logging.INFO, "would create Gitea label %r", name)
        else:
            for name, colour in missing.items():
                existing.append(await self.gitea.create_label(name, colour))
                self._log(logging.INFO, "created Gitea label %r (%s)", name, colour)
        self._label_ids = label_ids(names, existing)

    # --- reconciliation ---------------------------------------------------------------------

    async def _markers(self, *, refresh: bool = False) -> dict[str, GiteaIssue]:
        """The marker index, listed from Gitea once per run (again after an unclear create).
        Every issue is read, not only those labelled source:bugsink: labels can be dropped
        by Gitea or removed by people, markers cannot."""
        if self._index is None or refresh:
            issues = [i async for i in self.gitea.issues(state="all")]
            self._index = marker_index(issues)
        return self._index

    async def _reconcile(self, first_use: bool) -> None:
        """Settle what an earlier run left unclear, before creating anything."""
        if first_use:
            await self._rebuild_if_lost()
            await self.store.set_meta(INITIALISED, iso_utc(datetime.now(UTC)))
        pending = await self.store.pending()
        await self._let_unclear_creates_land(pending)
        for uuid in pending:
            found = (await self._markers()).get(uuid)
            if await self.store.get(uuid) is not None:
                await self.store.clear_pending(uuid)
            elif found is not None:
                await self._adopt(uuid, found, project_of(found.body))
            else:
                await self.store.clear_pending(uuid)  # never reached Gitea: create it anew

    async def _let_unclear_creates_land(self, pending: Mapping[str, datetime]) -> None:
        """A create whose answer never came may still be under way in Gitea: wait until the
        youngest such intent is `settle_seconds` old, then look at Gitea again."""
        index = await self._markers() if pending else {}
        unclear = [since for uuid, since in pending.items() if uuid not in index]
        if not unclear:
            return
        wait = self.options.settle_seconds - (datetime.now(UTC) - max(unclear)).total_seconds()
        if wait > 0:
            self._log(logging.INFO, "waiting %.0f s for an unclear create to land in Gitea", wait)
            await asyncio.sleep(wait)
            await self._markers(refresh=True)

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
        now = datetime.now(UTC)
        record = SyncRecord(issue.number, now, project, issue.title, handled_at=now)
        await self.store.complete(uuid, record)
        labels = [label.name for label in issue.labels]
        found = CreatedIssue(uuid, project, issue.title, labels, issue.number, issue.html_url)
        self.report.recovered.append(found)
        self._log(
            logging.WARNING,
            "found Gitea issue #%d by its marker: recorded it",
            issue.number,
            issue=uuid,
            project=project,
        )

    # --- the issues -------------------------------------------------------------------------

    async def _sync_project(self, project: ProjectConfig, bugsink_project: Project) -> None:
        if self.progress is not None:
            self.progress.project(project.slug)
        async for page in self.bugsink.unresolved_issues(bugsink_project.id):
            for issue in page:
                await self._sync_issue(project, issue)
                if self.progress is not None:
                    self.progress.issue()

    async def _sync_one(
        self, issue_id: str, projects: Sequence[tuple[ProjectConfig, Project]]
    ) -> None:
        """One issue, e.g. named by a webhook: it must belong to a configured project."""
        try:
            issue = await self.bugsink.issue(issue_id)
        except NotFoundError:
            self.report.notice(f"Bugsink has no issue {issue_id}")
            return
        project = next((p for p, bp in projects if bp.id == issue.project), None)
        if project is None:
            self.report.notice(f"issue {issue_id} belongs to a project that is not configured")
        elif not issue.is_resolved:
            await self._sync_issue(project, issue)

    async def _sync_issue(self, project: ProjectConfig, issue: Issue) -> None:
        try:
            record = await self.store.get(issue.id)
            action = decide(issue, record, self.policy)
            if action is Action.CREATE:
                await self._consider_new(project, issue)
            elif action is Action.SKIP_MUTED or record is None:
                self.report.muted += 1
                self.report.skipped += 1
            else:
                await self._handle_synced(action, issue, record)
                self.report.skipped += 1
            self._failures_in_a_row = 0
        except (ServiceError, StateError) as exc:
            if _fatal(exc):
                raise
            self._count_failure(project, issue, exc)

    async def _handle_synced(self, action: Action, issue: Issue, record: SyncRecord) -> None:
        if action is Action.RESOLVE_AGAIN:
            await self._backlink(issue, record)
            await self._resolve(issue)
        elif action is Action.FOLLOW_GITEA:
            await self._follow_gitea(issue, record)
        elif action is Action.REGRESSION:
            await self._regression(issue, record)
        else:
            self.report.regressions += 1

    def _count_failure(self, project: ProjectConfig, issue: Issue, exc: Exception) -> None:
        self.report.failed += 1
        self.report.failures.append(Failure(issue.id, project.slug, str(exc)))
        self._log(logging.ERROR, "failed: %s", exc, issue=issue.id, project=project.slug)
        if not isinstance(exc, ServiceUnavailable):
            return  # a problem of this issue, not of the service
        self._failures_in_a_row += 1
        if self._failures_in_a_row >= MAX_CONSECUTIVE_FAILURES:
            raise ServiceUnavailable(
                exc.service,
                f"{self._failures_in_a_row} issues in a row failed; stopping this run",
                fix=exc.fix,
            ) from exc

    async def _consider_new(self, project: ProjectConfig, issue: Issue) -> None:
        """A new error: filters, then the cap on new issues, then create."""
        if below_minimum(issue, project):
            self.report.filtered += 1
            self.report.skipped += 1
            return
        if self._new_issues >= self.policy.max_new_issues and not self.options.backfill:
            self.report.backlog += 1
            return
        if await self._create(project, issue):
            self._new_issues += 1
            self.report.synced += 1
        else:
            self.report.filtered += 1
            self.report.skipped += 1

    async def _create(self, project: ProjectConfig, issue: Issue) -> bool:
        """Create (or adopt) the Gitea issue; False when the event's filters reject it."""
        event = await self._latest_event(issue)
        if filtered_out(event.data if event else {}, project):
            return False
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
            return True
        if existing is not None:  # made by a run whose record was lost: adopt it
            await self._adopt(issue.id, existing, project.slug)
        else:
            existing = await self._create_once(project, issue, rendered.title, rendered.body, names)
            await self._repair_labels(existing.number, self._ids(names), existing.labels)
        record = await self.store.get(issue.id)
        if record is not None:
            await self._backlink(issue, record, existing.html_url)
        if not self.policy.two_way:
            await self._resolve(issue)
        return True

    async def _latest_event(self, issue: Issue) -> Event | None:
        """The newest event, or None when Bugsink cannot serve it (an event it stored but
        fails to read back answers 500): the issue is then made from the issue alone."""
        try:
            return await self.bugsink.latest_event(issue.id)
        except ServiceUnavailable as exc:
            if exc.status is None:
                raise
            self.report.notice(
                f"Bugsink could not serve the newest event of {issue.id} ({exc.status}); its "
                "Gitea issue shows what the issue list says, without details"
            )
            return None

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
        now = datetime.now(UTC)
        closed = False if self.policy.two_way else None
        record = SyncRecord(created.number, now, project.slug, created.title, now, False, closed)
        await self.store.complete(issue.id, record)
        if self._index is not None:
            self._index[issue.id] = created
        self.report.created.append(
            CreatedIssue(issue.id, project.slug, title, names, created.number, created.html_url)
        )
        self._log(
            logging.INFO,
            "created Gitea issue #%d: %s",
            created.number,
            title,
            issue=issue.id,
            project=project.slug,
        )
        return created

    async def _repair_labels(self, number: int, sent: list[int], applied: list[Label]) -> None:
        """Gitea drops label ids it will not apply without an error: add them again, and say so
        if they still do not stick (usually: the token's user may not write issues)."""
        dropped = missing_label_ids(sent, applied)
        if not dropped:
            return
        try:
            now = await self.gitea.add_labels(number, dropped)
        except AuthError:
            now = []
        if missing_label_ids(dropped, now):
            self.report.notice(
                f"Gitea did not apply every label to issue #{number}; give the token's user "
                "write access to the repository's issues"
            )

    # --- after the first sync ---------------------------------------------------------------------

    async def _gitea_issue(self, uuid: str, record: SyncRecord) -> GiteaIssue | None:
        """The Gitea issue of a record, from the marker index (one listing per run)."""
        found = (await self._markers()).get(uuid)
        if found is None or found.number != record.gitea_issue_number:
            self.report.notice(f"Gitea issue #{record.gitea_issue_number} of {uuid} is gone")
            return None
        return found

    async def _backlink(self, issue: Issue, record: SyncRecord, url: str | None = None) -> None:
        """Tell people in Bugsink where the error went (once; 2.2.1+)."""
        if record.backlinked or not self._can_comment or self.options.dry_run:
            return
        if url is None:
            found = await self._gitea_issue(issue.id, record)
            url = found.html_url if found else None
        if url is None:
            return
        try:
            added = await self.bugsink.comment(issue.id, backlink_text(url))
        except AuthError as exc:
            self._can_comment = False  # e.g. the token lacks issues:comment: keep syncing
            self.report.notice(f"commenting in Bugsink is not allowed: {exc}")
            return
        if added:
            await self.store.put(issue.id, replace(record, backlinked=True))

    async def _regression(self, issue: Issue, record: SyncRecord) -> None:
        """New events after the sync acted: comment (once), reopen if so configured, and (in
        one-way mode) resolve in Bugsink again; never a second Gitea issue."""
        self.report.regressions += 1
        found = await self._gitea_issue(issue.id, record)
        if found is None or self.options.dry_run:
            return
        reopen = self.policy.regressions == "reopen" and found.state == "closed"
        if not any(
            regression_key(issue) in body for body in await self.gitea.comments(found.number)
        ):
            comment = regression_comment(issue, self.bugsink.issue_url(issue.id), reopened=reopen)
            await self.gitea.add_comment(found.number, comment)
        if reopen:
            found = await self.gitea.set_state(found.number, "open")
            assert self._index is not None
            self._index[issue.id] = found
        still_closed = found.state == "closed"
        closed = still_closed if self.policy.two_way else record.gitea_closed
        await self.store.put(
            issue.id, replace(record, handled_at=datetime.now(UTC), gitea_closed=closed)
        )
        self._log(logging.INFO, "regression noted on Gitea issue #%d", found.number, issue=issue.id)
        if not self.policy.two_way:
            await self._resolve(issue)

    async def _follow_gitea(self, issue: Issue, record: SyncRecord) -> None:
        """Two-way mode: the Bugsink issue stays open until its Gitea issue is closed."""
        await self._backlink(issue, record)
        found = await self._gitea_issue(issue.id, record)
        outcome = gitea_outcome(found, self.policy)
        if outcome is GiteaOutcome.NONE or self.options.dry_run:
            return
        if outcome is GiteaOutcome.RESOLVE:
            await self._resolve(issue)
        elif outcome is GiteaOutcome.MUTE:
            await self.bugsink.mute(issue.id)
        record = await self.store.get(issue.id) or record
        closed = replace(record, gitea_closed=True, handled_at=datetime.now(UTC))
        await self.store.put(issue.id, closed)
        self._log(
            logging.INFO,
            "Gitea issue #%d is closed: %s in Bugsink",
            record.gitea_issue_number,
            outcome,
            issue=issue.id,
        )

    async def _follow_reopened(self) -> None:
        """Two-way mode: a Gitea issue opened again after the sync resolved its Bugsink issue
        reopens that Bugsink issue (2.4.0+), once."""
        index = await self._markers()
        async for uuid, record in self.store.items():
            found = index.get(uuid)
            if not record.gitea_closed or found is None or found.state != "open":
                continue
            if Feature.REOPEN in self._features:
                await self.bugsink.reopen(uuid)
                self._log(
                    logging.INFO,
                    "Gitea issue #%d was reopened: reopened it",
                    found.number,
                    issue=uuid,
                )
            await self.store.put(
                uuid, replace(record, gitea_closed=False, handled_at=datetime.now(UTC))
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

    def _closing_notices(self) -> None:
        if self.report.backlog:
            self.report.notice(
                f"{self.report.backlog} new issue(s) wait for later runs: at most "
                f"{self.policy.max_new_issues} are created per run (sync.max_new_issues); "
                "`bugsink-sync sync --backfill` creates them all now"
            )
        if self.policy.regressions == "ignore" and self.report.regressions:
            self.report.notice(
                f"{self.report.regressions} synced issue(s) have had new events since "
                "(regressions); sync.regressions = 'ignore' leaves them as they are"
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


async def run_sync(
    bugsink: BugsinkClient,
    gitea: GiteaClient,
    store: StateStore,
    config: SyncConfig,
    options: SyncOptions = SyncOptions(),
    lock: RunLock | None = None,
    progress: Progress | None = None,
) -> SyncReport:
    """Run one sync and return its report (raises SyncAborted when it cannot complete)."""
    return await SyncRun(bugsink, gitea, store, config, options, lock, progress).run()
