"""The core sync end to end: a real Bugsink fed by sentry-sdk, the Gitea test server, and
both state stores."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from bugsink_sync.connections import connect
from bugsink_sync.render import find_marker
from bugsink_sync.state import KEY_PREFIX, SyncRecord
from bugsink_sync.sync import SyncAborted
from tests.lab.bugsink import BugsinkProject, BugsinkServer, send_events, start_bugsink
from tests.lab.gitea.fixtures import GiteaRepoFixture
from tests.lab.runs import make_settings, sync

pytestmark = pytest.mark.bugsink

LABELS = ["bug:backend", "env:production", "source:bugsink"]
REDIS_TEST_URL = "redis://127.0.0.1:6379"
REDIS_TEST_DB = 13


def gitea_issues(gitea: GiteaRepoFixture) -> list[dict[str, Any]]:
    """Every issue in the test repository, read over HTTP like any client would."""
    found: list[dict[str, Any]] = []
    with httpx.Client(base_url=gitea.url + "/api/v1/", trust_env=False) as http:
        page = 1
        while True:
            response = http.get(
                f"repos/{gitea.owner}/{gitea.repo}/issues",
                params={"state": "all", "type": "issues", "limit": 50, "page": page},
                headers={"Authorization": f"token {gitea.token}"},
            )
            response.raise_for_status()
            found += response.json()
            if len(response.json()) < 50:
                return found
            page += 1


def gitea_labels(gitea: GiteaRepoFixture) -> list[dict[str, Any]]:
    with httpx.Client(base_url=gitea.url + "/api/v1/", trust_env=False) as http:
        response = http.get(
            f"repos/{gitea.owner}/{gitea.repo}/labels",
            params={"limit": 50},
            headers={"Authorization": f"token {gitea.token}"},
        )
        response.raise_for_status()
        return list(response.json())


def by_marker(issues: list[dict[str, Any]]) -> Mapping[str, dict[str, Any]]:
    return {str(find_marker(i["body"])): i for i in issues}


async def test_first_sync_creates_labelled_issues_records_and_resolves(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    send_events(
        bugsink_project.dsn, ["value_error", "custom", "request", "repeated", "message", "logging"]
    )
    unresolved = bugsink.list_issues(bugsink_project.id, state="unresolved")
    assert len(unresolved) == 6
    settings = make_settings(bugsink, gitea, tmp_path, [bugsink_project.slug])

    report = await sync(settings)

    assert report.summary()["synced"] == 6
    assert (report.skipped, report.failed, report.error) == (0, 0, None)
    created = by_marker(gitea_issues(gitea))
    assert set(created) == {i["id"] for i in unresolved}
    for bugsink_issue in unresolved:
        gitea_issue = created[bugsink_issue["id"]]
        assert sorted(label["name"] for label in gitea_issue["labels"]) == sorted(LABELS)
        assert gitea_issue["title"].startswith(f"[{bugsink_issue['calculated_type']}] ")
        assert f"**Project**: {bugsink_project.slug}" in gitea_issue["body"]
        assert f"/issues/issue/{bugsink_issue['id']}/event/last/" in gitea_issue["body"]
    repeated = next(i for i in unresolved if i["calculated_type"] == "TimeoutError")
    assert "- **Total Occurrences**: 4" in created[repeated["id"]]["body"]
    request = next(i for i in unresolved if i["calculated_type"] == "RuntimeError")
    assert (
        "- **URL**: ` POST https://shop.example.org/checkout/confirm `"
        in created[request["id"]]["body"]
    )
    assert bugsink.list_issues(bugsink_project.id, state="unresolved") == []
    colours = {label["name"]: label["color"] for label in gitea_labels(gitea)}
    assert colours == {
        "bug:backend": "ea580c",
        "env:production": "dc2626",
        "source:bugsink": "10b981",
    }

    async with connect(settings) as c:
        assert await c.store.count() == 6
        for bugsink_id, gitea_issue in created.items():
            record = await c.store.get(bugsink_id)
            assert record is not None
            assert record.gitea_issue_number == gitea_issue["number"]
            assert record.project == bugsink_project.slug

    again = await sync(settings)
    assert again.summary()["synced"] == 0
    assert len(gitea_issues(gitea)) == 6


async def test_dry_run_changes_nothing_anywhere(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    send_events(bugsink_project.dsn, ["zero_div", "key_error"])
    settings = make_settings(bugsink, gitea, tmp_path, [bugsink_project.slug])

    report = await sync(settings, dry_run=True)

    assert report.dry_run and report.synced == 2
    assert sorted(c.title for c in report.created) == [
        "[KeyError] 'bob'",
        "[ZeroDivisionError] division by zero",
    ]
    assert all(c.labels == LABELS and c.gitea_number is None for c in report.created)
    assert gitea_issues(gitea) == []
    assert gitea_labels(gitea) == []
    assert len(bugsink.list_issues(bugsink_project.id, state="unresolved")) == 2
    assert not (tmp_path / "state.sqlite3").exists()


async def test_recorded_issues_are_skipped_and_existing_labels_reused(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    send_events(bugsink_project.dsn, ["value_error", "zero_div"])
    first, second = bugsink.list_issues(bugsink_project.id, state="unresolved")
    for index in range(60):  # labels beyond Gitea's 50-per-page cap
        gitea.state.add_label(gitea.owner, gitea.repo, f"aaa-{index:02d}", "#000000")
    gitea.state.add_label(gitea.owner, gitea.repo, "source:bugsink", "#123456")
    settings = make_settings(bugsink, gitea, tmp_path, [bugsink_project.slug])
    async with connect(settings) as c:
        later = datetime.now(UTC) + timedelta(hours=1)  # "synced after the last event"
        await c.store.put(first["id"], SyncRecord(999, later, bugsink_project.slug, "old"))

    report = await sync(settings)

    assert (report.synced, report.skipped, report.failed) == (1, 1, 0)
    issues = gitea_issues(gitea)
    assert [find_marker(i["body"]) for i in issues] == [second["id"]]
    names = [label["name"] for label in gitea_labels(gitea)] + [
        label["name"] for label in issues[0]["labels"]
    ]
    assert (
        sum(
            1
            for label in gitea.state.labels_of(gitea.owner, gitea.repo)
            if label.name == "source:bugsink"
        )
        == 1
    )
    assert "source:bugsink" in names
    # The recorded issue had no event since it was synced: it is resolved again, not re-created.
    assert bugsink.get_issue(first["id"])["is_resolved"] is True


async def test_unconfigured_projects_are_left_alone(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    other = bugsink.create_project(f"other-{uuid.uuid4().hex[:8]}")
    send_events(bugsink_project.dsn, ["zero_div"])
    send_events(other.dsn, ["key_error"])
    settings = make_settings(bugsink, gitea, tmp_path, [bugsink_project.slug])

    report = await sync(settings)

    assert report.synced == 1
    assert len(bugsink.list_issues(other.id, state="unresolved")) == 1


async def test_redis_store_holds_the_seed_keys(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    redis = aioredis.Redis.from_url(REDIS_TEST_URL, db=REDIS_TEST_DB, decode_responses=True)
    await redis.flushdb()
    send_events(bugsink_project.dsn, ["zero_div"])
    (issue,) = bugsink.list_issues(bugsink_project.id, state="unresolved")
    settings = make_settings(
        bugsink,
        gitea,
        tmp_path,
        [bugsink_project.slug],
        REDIS_URL=REDIS_TEST_URL,
        BUGSINK_SYNC_STATE_DB=str(REDIS_TEST_DB),
    )

    report = await sync(settings)

    assert report.synced == 1
    record = SyncRecord.from_json(await redis.get(KEY_PREFIX + issue["id"]))
    assert record.title == "[ZeroDivisionError] division by zero"
    assert record.gitea_issue_number == gitea_issues(gitea)[0]["number"]
    assert not (tmp_path / "state.sqlite3").exists()
    await redis.aclose()


async def test_missing_configured_project_is_reported_not_fatal(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    send_events(bugsink_project.dsn, ["zero_div"])
    settings = make_settings(bugsink, gitea, tmp_path, [bugsink_project.slug, "no-such-project"])
    report = await sync(settings)
    assert report.synced == 1
    assert any("no project 'no-such-project'" in n for n in report.notices)


async def test_bad_bugsink_token_stops_the_run_with_the_fix(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    settings = make_settings(
        bugsink, gitea, tmp_path, [bugsink_project.slug], BUGSINK_TOKEN="f" * 40
    )
    with pytest.raises(SyncAborted) as aborted:
        await sync(settings)
    message = str(aborted.value)
    assert message.startswith("Bugsink: ")
    assert "401" in message and "create_auth_token" in message
    assert "f" * 40 not in message
    assert gitea_issues(gitea) == []


async def test_old_bugsink_without_resolve_still_syncs_and_says_so(
    gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    with start_bugsink("2.0.11") as old:
        project = old.create_project("legacy-shop")
        send_events(project.dsn, ["zero_div", "key_error"], version="2.0.11")
        settings = make_settings(old, gitea, tmp_path, [project.slug])

        report = await sync(settings)

        assert (report.synced, report.failed) == (2, 0)
        assert len(gitea_issues(gitea)) == 2
        (notice,) = report.notices
        assert "cannot resolve issues through its API (added in 2.2.1)" in notice
        assert len(old.list_issues(project.id)) == 2  # still unresolved, as it must be
        again = await sync(settings)
        assert (again.synced, again.skipped, again.failed) == (0, 2, 0)
        assert len(gitea_issues(gitea)) == 2
