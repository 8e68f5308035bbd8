"""The sync's pure decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bugsink_sync.bugsink import Issue
from bugsink_sync.config import DEFAULT_SYNC_CONFIG, ConfigError, SyncPolicy
from bugsink_sync.gitea import Issue as GiteaIssue
from bugsink_sync.gitea import Label
from bugsink_sync.policy import (
    Action,
    decide,
    label_ids,
    labels_to_create,
    marker_index,
    missing_label_ids,
    missing_project_notice,
    project_of,
    select_projects,
)
from bugsink_sync.render import marker
from bugsink_sync.state import SyncRecord

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def issue(last_seen: datetime) -> Issue:
    return Issue(id="u", project=1, first_seen=last_seen, last_seen=last_seen)


def record(synced_at: datetime) -> SyncRecord:
    return SyncRecord(7, synced_at, "p", "[E] x")


ONE_WAY = SyncPolicy()


def test_unrecorded_issue_is_created() -> None:
    assert decide(issue(NOW), None, ONE_WAY) is Action.CREATE


def test_recorded_issue_without_new_events_is_resolved_again() -> None:
    assert decide(issue(NOW - timedelta(minutes=1)), record(NOW), ONE_WAY) is Action.RESOLVE_AGAIN


def test_recorded_issue_with_newer_events_is_a_regression() -> None:
    assert decide(issue(NOW + timedelta(minutes=1)), record(NOW), ONE_WAY) is Action.REGRESSION
    ignoring = SyncPolicy(regressions="ignore")
    assert (
        decide(issue(NOW + timedelta(minutes=1)), record(NOW), ignoring) is Action.IGNORE_REGRESSION
    )


def test_only_labels_missing_by_exact_name_are_created() -> None:
    existing = [Label(id=1, name="bug:backend"), Label(id=2, name="Env:Test")]
    wanted = {"bug:backend": "#ea580c", "env:test": "#2563eb"}
    assert labels_to_create(wanted, existing) == {"env:test": "#2563eb"}


def test_duplicate_label_names_resolve_to_the_first_listed() -> None:
    existing = [Label(id=5, name="a"), Label(id=3, name="a"), Label(id=9, name="b")]
    assert label_ids(["a"], existing) == {"a": 5}


def test_dropped_label_ids_are_found() -> None:
    assert missing_label_ids([1, 2, 3], [Label(id=2, name="x")]) == [1, 3]


def test_project_selection() -> None:
    assert len(select_projects(DEFAULT_SYNC_CONFIG, None)) == 6
    (only,) = select_projects(DEFAULT_SYNC_CONFIG, "flyer-crawler-backend")
    assert only.slug == "flyer-crawler-backend"
    with pytest.raises(ConfigError, match="not a configured project"):
        select_projects(DEFAULT_SYNC_CONFIG, "nope")


def gitea_issue(number: int, body: str) -> GiteaIssue:
    return GiteaIssue(id=100 + number, number=number, title=f"t{number}", body=body)


def test_marker_index_maps_uuids_and_the_oldest_issue_wins() -> None:
    uuid = "282fde12-b570-4dc4-afef-289fb2488b03"
    index = marker_index(
        [
            gitea_issue(9, f"copy\n{marker(uuid)}"),
            gitea_issue(3, f"original\n{marker(uuid)}"),
            gitea_issue(4, "a human's issue, no marker"),
        ]
    )
    assert list(index) == [uuid]
    assert index[uuid].number == 3


def test_project_of_reads_the_footer() -> None:
    body = "## Error Details\n\n---\n\n**Bugsink Issue**: u\n**Project**: shop-test\n\n<!-- m -->\n"
    assert project_of(body) == "shop-test"
    assert project_of("no footer") == ""


def test_missing_project_notice_suggests_the_closest_slug() -> None:
    text = missing_project_notice("shop-bakend", ["shop-backend", "shop-frontend"], "f.toml")
    assert "Did you mean 'shop-backend'?" in text and "(from f.toml)" in text
    assert "Did you mean" not in missing_project_notice("zzz", ["shop-backend"], "f.toml")
