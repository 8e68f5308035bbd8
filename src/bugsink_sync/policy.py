"""The sync's decisions, as plain functions over data: what to do with one Bugsink issue,
whether the noise filters let it through, what a closed Gitea issue means in two-way mode,
and what a regression comment says."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any

from bugsink_sync.bugsink import Issue
from bugsink_sync.config import ConfigError, ProjectConfig, SyncConfig, SyncPolicy, fold
from bugsink_sync.gitea import Issue as GiteaIssue
from bugsink_sync.gitea import Label
from bugsink_sync.render import find_marker, utc
from bugsink_sync.state import SyncRecord, iso_utc

REGRESSION_KEY = "bugsink-sync:regression="


class Action(StrEnum):
    """What to do with one unresolved Bugsink issue."""

    CREATE = "create"
    RESOLVE_AGAIN = "resolve_again"  # one-way: synced, no event since, yet unresolved
    FOLLOW_GITEA = "follow_gitea"  # two-way: synced, no event since: act on Gitea's state
    REGRESSION = "regression"  # synced, and new events since the sync last acted
    IGNORE_REGRESSION = "ignore_regression"
    SKIP_MUTED = "skip_muted"


def decide(issue: Issue, record: SyncRecord | None, policy: SyncPolicy) -> Action:
    """One issue's action. Muted issues are left alone unless configured otherwise."""
    if issue.is_muted and not policy.include_muted:
        return Action.SKIP_MUTED
    if record is None:
        return Action.CREATE
    if issue.last_seen > record.last_handled:
        return Action.IGNORE_REGRESSION if policy.regressions == "ignore" else Action.REGRESSION
    return Action.FOLLOW_GITEA if policy.two_way else Action.RESOLVE_AGAIN


def below_minimum(issue: Issue, project: ProjectConfig) -> bool:
    """Fewer occurrences than the project's `min_occurrences`."""
    return issue.digested_event_count < project.min_occurrences


def filtered_out(data: Mapping[str, Any], project: ProjectConfig) -> str | None:
    """Why the project's level or environment filter rejects this event, if it does."""
    level = fold(data.get("level") or "error")
    if project.levels and level not in project.levels:
        return f"level {level!r}"
    environment = fold(data.get("environment"))
    if project.environments and environment not in project.environments:
        return f"environment {environment!r}"
    return None


class GiteaOutcome(StrEnum):
    """What a Gitea issue's state asks of its Bugsink issue in two-way mode."""

    NONE = "none"  # still open: keep the Bugsink issue open
    RESOLVE = "resolve"  # closed as done
    MUTE = "mute"  # closed with a "not fixed" label, mute configured
    LEAVE = "leave"  # closed with a "not fixed" label, leave configured


def gitea_outcome(issue: GiteaIssue | None, policy: SyncPolicy) -> GiteaOutcome:
    """Closed means fixed, unless a "not fixed" label says otherwise."""
    if issue is None or issue.state != "closed":
        return GiteaOutcome.NONE
    not_fixed = {fold(name) for name in policy.not_fixed_labels}
    if not_fixed & {fold(label.name) for label in issue.labels}:
        return GiteaOutcome.MUTE if policy.not_fixed_action == "mute" else GiteaOutcome.LEAVE
    return GiteaOutcome.RESOLVE


def regression_key(issue: Issue) -> str:
    """Identifies one regression (the issue and its latest event), so it is commented once."""
    return f"<!-- {REGRESSION_KEY}{issue.id}@{iso_utc(issue.last_seen)} -->"


def regression_comment(issue: Issue, issue_url: str, *, reopened: bool) -> str:
    """The Gitea comment for a regression."""
    lead = "This issue was reopened because the error" if reopened else "The error"
    return (
        f"**Regression**: {lead} happened again in Bugsink after it was resolved.\n\n"
        f"- **Last Seen**: {utc(issue.last_seen)}\n"
        f"- **Total Occurrences**: {issue.digested_event_count}\n\n"
        f"**Bugsink Issue**: {issue_url}\n\n{regression_key(issue)}\n"
    )


def backlink_text(gitea_issue_url: str) -> str:
    """The comment left on the Bugsink issue."""
    return f"Synced to Gitea: {gitea_issue_url}"


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
            return line.removeprefix("**Project**: ").strip().strip("`").strip()
    return ""


def missing_project_notice(slug: str, available: Sequence[str], origin: str) -> str:
    """Say that a configured project is missing, with the closest slug Bugsink has."""
    close = difflib.get_close_matches(slug, available, n=1, cutoff=0.8)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"Bugsink has no project {slug!r} (from {origin}), or the token cannot see it.{hint}"
