"""Beyond the first sync, against the real Bugsink: regressions, back-links, two-way mode,
noise control, and how older Bugsink releases degrade."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from bugsink_sync.render import find_marker
from tests.lab.bugsink import (
    BugsinkProject,
    BugsinkServer,
    send_envelope,
    send_events,
    start_bugsink,
)
from tests.lab.gitea.fixtures import GiteaRepoFixture
from tests.lab.runs import make_settings, sync

pytestmark = pytest.mark.bugsink


def human(gitea: GiteaRepoFixture) -> httpx.Client:
    """A person using Gitea's API with the fixture's token."""
    return httpx.Client(base_url=gitea.api_url, headers=gitea.headers, trust_env=False)


def close(gitea: GiteaRepoFixture, number: int, *labels: str) -> None:
    with human(gitea) as http:
        for name in labels:
            gitea.state.add_label(gitea.owner, gitea.repo, name, "#888888")
        if labels:
            http.post(
                f"repos/{gitea.owner}/{gitea.repo}/issues/{number}/labels",
                json={"labels": list(labels)},
            ).raise_for_status()
        http.patch(
            f"repos/{gitea.owner}/{gitea.repo}/issues/{number}", json={"state": "closed"}
        ).raise_for_status()


def reopen_in_gitea(gitea: GiteaRepoFixture, number: int) -> None:
    with human(gitea) as http:
        http.patch(
            f"repos/{gitea.owner}/{gitea.repo}/issues/{number}", json={"state": "open"}
        ).raise_for_status()


def comments(gitea: GiteaRepoFixture, number: int) -> list[str]:
    return [c.body for c in gitea.state.comments(gitea.owner, gitea.repo, number)]


def history(bugsink: BugsinkServer, issue_id: str) -> list[dict[str, Any]]:
    return list(bugsink.call("GET", "issue-history/", params={"issue": issue_id})["results"])


async def test_a_regression_is_commented_reopened_and_resolved_again_never_duplicated(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    send_events(bugsink_project.dsn, ["value_error"])
    settings = make_settings(bugsink, gitea, tmp_path, [bugsink_project.slug])
    assert (await sync(settings)).synced == 1
    (issue,) = gitea.issues()
    close(gitea, issue.number)  # someone fixed it
    send_events(bugsink_project.dsn, ["regress"])  # the same error comes back
    (bugsink_issue,) = bugsink.list_issues(bugsink_project.id, state="unresolved")

    report = await sync(settings)

    assert (report.synced, report.regressions, report.failed) == (0, 1, 0)
    (after,) = gitea.issues()
    assert after.number == issue.number and after.state == "open"
    (comment,) = comments(gitea, issue.number)
    assert comment.startswith("**Regression**: This issue was reopened")
    assert "- **Total Occurrences**: 2" in comment
    assert bugsink.get_issue(bugsink_issue["id"])["is_resolved"] is True
    again = await sync(settings)
    assert again.regressions == 0 and len(comments(gitea, issue.number)) == 1


async def test_comment_only_policy_does_not_reopen(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    send_events(bugsink_project.dsn, ["value_error"])
    settings = make_settings(
        bugsink,
        gitea,
        tmp_path,
        [bugsink_project.slug],
        extra_toml='[sync]\nregressions = "comment"\n',
    )
    await sync(settings)
    (issue,) = gitea.issues()
    close(gitea, issue.number)
    send_events(bugsink_project.dsn, ["regress"])
    report = await sync(settings)
    assert report.regressions == 1
    assert gitea.issues()[0].state == "closed"
    assert comments(gitea, issue.number)[0].startswith("**Regression**: The error happened again")


async def test_the_bugsink_issue_links_to_its_gitea_issue(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    send_events(bugsink_project.dsn, ["zero_div"])
    settings = make_settings(bugsink, gitea, tmp_path, [bugsink_project.slug])
    await sync(settings)
    (bugsink_issue,) = bugsink.list_issues(bugsink_project.id)
    (issue,) = gitea.issues()
    notes = [
        h["comment"]
        for h in history(bugsink, bugsink_issue["id"])
        if h["kind"] == "manual_annotation"
    ]
    assert notes == [
        f"Synced to Gitea: {gitea.url}/{gitea.owner}/{gitea.repo}/issues/{issue.number}"
    ]


async def test_two_way_mode_follows_gitea_closing_and_reopening_without_loops(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    send_events(bugsink_project.dsn, ["zero_div", "key_error"])
    settings = make_settings(
        bugsink, gitea, tmp_path, [bugsink_project.slug], extra_toml="[sync]\ntwo_way = true\n"
    )
    assert (await sync(settings)).synced == 2
    by_uuid = {find_marker(i.body): i for i in gitea.issues()}
    assert len(bugsink.list_issues(bugsink_project.id, state="unresolved")) == 2  # kept open
    fixed, wontfix = sorted(by_uuid)
    close(gitea, by_uuid[fixed].number)
    close(gitea, by_uuid[wontfix].number, "wontfix")

    followed = await sync(settings)

    assert followed.failures == [] and followed.notices == []
    assert bugsink.get_issue(fixed)["is_resolved"] is True
    muted = bugsink.get_issue(wontfix)
    assert muted["is_muted"] is True and muted["is_resolved"] is False
    before = [(i.number, i.state) for i in gitea.issues()]
    await sync(settings)  # nothing new happened: nothing changes
    assert [(i.number, i.state) for i in gitea.issues()] == before
    assert bugsink.get_issue(fixed)["is_resolved"] is True

    reopen_in_gitea(gitea, by_uuid[fixed].number)  # someone was wrong: it is not fixed
    await sync(settings)
    assert bugsink.get_issue(fixed)["is_resolved"] is False
    await sync(settings)
    assert bugsink.get_issue(fixed)["is_resolved"] is False  # still open: no loop
    assert len(gitea.issues()) == 2


async def test_muted_issues_and_filters_and_the_cap(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    send_events(bugsink_project.dsn, ["unique:cap"], count=5)  # production, level error
    send_events(bugsink_project.dsn, ["repeated"])  # 4 occurrences of one error
    send_events(bugsink_project.dsn, ["message"])  # level warning
    send_events(bugsink_project.dsn, ["zero_div"], environment="  Staging ")
    send_envelope(
        bugsink_project.dsn,
        {
            "platform": "python",
            "level": "ERROR",
            "environment": " PRODUCTION",
            "message": "odd case",
        },
    )
    muted = bugsink.list_issues(bugsink_project.id)[0]["id"]
    bugsink.mute(muted)
    settings = make_settings(
        bugsink,
        gitea,
        tmp_path,
        [bugsink_project.slug],
        project_toml='levels = ["Error"]\nenvironments = [" production "]\n',
        extra_toml="[sync]\nmax_new_issues = 3\n",
    )

    first = await sync(settings)

    assert first.synced == 3 and first.backlog > 0 and first.muted == 1
    assert any("--backfill" in n for n in first.notices)
    rest = await sync(settings, backfill=True)
    created = {i.title for i in gitea.issues()}
    assert len(created) == first.synced + rest.synced
    assert "[Log Message] Disk usage above 90% on /var/lib/shop" not in created  # warning
    assert "[ZeroDivisionError] division by zero" not in created  # staging
    assert "[Log Message] odd case" in created  # " PRODUCTION" and "ERROR" match
    assert muted not in {find_marker(i.body) for i in gitea.issues()}
    assert rest.filtered == 2 and rest.backlog == 0


async def test_min_occurrences(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    send_events(bugsink_project.dsn, ["repeated", "zero_div"])
    settings = make_settings(
        bugsink, gitea, tmp_path, [bugsink_project.slug], project_toml="min_occurrences = 3\n"
    )
    report = await sync(settings)
    assert (report.synced, report.filtered) == (1, 1)
    assert [i.title for i in gitea.issues()] == [
        "[TimeoutError] upstream inventory service timed out"
    ]


async def test_older_bugsink_degrades_with_one_clear_line(
    gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    with start_bugsink("2.2.1") as old:
        project = old.create_project("legacy-two-way")
        send_events(project.dsn, ["zero_div"], version="2.2.1")
        settings = make_settings(
            old, gitea, tmp_path, [project.slug], extra_toml="[sync]\ntwo_way = true\n"
        )
        report = await sync(settings)
        assert report.synced == 1
        (line,) = [n for n in report.notices if n.startswith("Bugsink 2.2.1")]
        assert "no reopening from Gitea (2.4.0+)" in line and "no state filter" in line
        (issue,) = gitea.issues()
        close(gitea, issue.number)
        await sync(settings)
        (bugsink_issue,) = old.list_issues(project.id)
        assert bugsink_issue["is_resolved"] is True  # resolve works on 2.2.1
        reopen_in_gitea(gitea, issue.number)
        again = await sync(settings)  # cannot reopen in Bugsink: says so, does not fail
        assert again.failed == 0
        assert old.list_issues(project.id)[0]["is_resolved"] is True


async def test_forgejo_works_as_gitea(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    gitea.state.config.version = "15.0.3+gitea-1.22.0"
    send_events(bugsink_project.dsn, ["zero_div"])
    settings = make_settings(bugsink, gitea, tmp_path, [bugsink_project.slug])
    assert (await sync(settings)).synced == 1
