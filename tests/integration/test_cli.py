"""`bugsink-sync sync` as a user runs it: a real process, real services, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.lab.bugsink import BugsinkProject, BugsinkServer, send_events
from tests.lab.gitea.fixtures import GiteaRepoFixture
from tests.lab.runs import clean_env, cli_env, run_cli

pytestmark = pytest.mark.bugsink


def test_sync_json_prints_one_report_object(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    send_events(bugsink_project.dsn, ["zero_div", "key_error"])
    env = cli_env(bugsink, gitea, tmp_path, bugsink_project.slug)
    result = run_cli(env, tmp_path, "sync", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["synced"], report["skipped"], report["failed"]) == (2, 0, 0)
    assert isinstance(report["duration_ms"], int)
    assert sorted(c["labels"][0] for c in report["created"]) == ["env:test", "env:test"]
    assert len(gitea.issues()) == 2


def test_human_output_lists_created_issues_and_a_summary(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    send_events(bugsink_project.dsn, ["zero_div"])
    env = cli_env(bugsink, gitea, tmp_path, bugsink_project.slug)
    result = run_cli(env, tmp_path, "sync")
    assert result.returncode == 0, result.stderr
    assert "#1 [ZeroDivisionError] division by zero  [env:test, source:bugsink]" in result.stdout
    assert f"{gitea.url}/{gitea.owner}/{gitea.repo}/issues/1" in result.stdout
    assert "synced 1, skipped 0, failed 0 in " in result.stdout.splitlines()[-1]


def test_dry_run_works_while_disabled_and_real_run_is_refused(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    send_events(bugsink_project.dsn, ["zero_div"])
    env = cli_env(bugsink, gitea, tmp_path, bugsink_project.slug, BUGSINK_SYNC_ENABLED="false")
    preview = run_cli(env, tmp_path, "sync", "--dry-run")
    assert preview.returncode == 0, preview.stderr
    assert "Would create 1 Gitea issue(s):" in preview.stdout
    assert "[ZeroDivisionError] division by zero  [env:test, source:bugsink]" in preview.stdout
    refused = run_cli(env, tmp_path, "sync")
    assert refused.returncode == 2
    assert "BUGSINK_SYNC_ENABLED" in refused.stderr
    assert gitea.issues() == []


def test_bad_bugsink_token_exits_1_with_one_line_and_no_secret(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    bad = "abcdef0123456789abcdef0123456789abcdef01"
    env = cli_env(bugsink, gitea, tmp_path, bugsink_project.slug, BUGSINK_TOKEN=bad)
    result = run_cli(env, tmp_path, "sync")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("bugsink-sync: Bugsink: ")
    assert "HTTP 401" in last and "bugsink-manage create_auth_token" in last
    assert bad not in result.stdout + result.stderr
    assert gitea.token not in result.stdout + result.stderr


def test_unreachable_gitea_exits_1_naming_gitea(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    env = cli_env(bugsink, gitea, tmp_path, bugsink_project.slug, GITEA_URL="http://127.0.0.1:1")
    result = run_cli(env, tmp_path, "sync", "--json")
    assert result.returncode == 1
    assert "Gitea: " in result.stderr and "GITEA_URL" in result.stderr
    assert "connection refused" in result.stderr
    assert json.loads(result.stdout)["error"].startswith("Gitea: ")


def test_configuration_errors_exit_2_naming_the_variable(tmp_path: Path) -> None:
    env = clean_env() | {"BUGSINK_URL": "http://127.0.0.1:1", "BUGSINK_TOKEN": "secret-value-123"}
    result = run_cli(env, tmp_path, "sync")
    assert result.returncode == 2
    assert "GITEA_URL is not set" in result.stderr and "GITEA_OWNER is not set" in result.stderr
    assert "secret-value-123" not in result.stderr


def test_unknown_project_exits_2(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    env = cli_env(bugsink, gitea, tmp_path, bugsink_project.slug)
    result = run_cli(env, tmp_path, "sync", "--project", "nope")
    assert result.returncode == 2
    assert "'nope' is not a configured project" in result.stderr


def test_state_tools_rebuild_list_show_and_forget(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    send_events(bugsink_project.dsn, ["zero_div", "key_error"])
    env = cli_env(bugsink, gitea, tmp_path, bugsink_project.slug)
    assert run_cli(env, tmp_path, "sync").returncode == 0
    uuids = sorted(i["id"] for i in bugsink.list_issues(bugsink_project.id))
    # An issue whose labels someone removed still counts: rebuild reads every issue.
    gitea.state.add_issue(
        gitea.owner,
        gitea.repo,
        "[E] unlabelled",
        body="x\n<!-- bugsink-sync:issue=0123456789abcdef -->",
    )
    (tmp_path / "state.sqlite3").unlink()

    rebuilt = run_cli(env, tmp_path, "state", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "found 3 Gitea issue(s) with a bugsink-sync marker; wrote 3 mapping(s)" in rebuilt.stdout

    listed = [
        json.loads(line)
        for line in run_cli(env, tmp_path, "state", "list", "--json").stdout.splitlines()
    ]
    assert sorted(entry["bugsink_issue"] for entry in listed) == sorted(
        [*uuids, "0123456789abcdef"]
    )
    by_uuid = {entry["bugsink_issue"]: entry for entry in listed}
    assert by_uuid[uuids[0]]["project"] == bugsink_project.slug
    assert {by_uuid[u]["gitea_issue_number"] for u in uuids} == {1, 2}

    shown = run_cli(env, tmp_path, "state", "show", uuids[0])
    assert shown.returncode == 0 and shown.stdout.startswith(uuids[0])
    unconfirmed = run_cli(env, tmp_path, "state", "forget", uuids[0])
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
    forgotten = run_cli(env, tmp_path, "state", "forget", uuids[0], "--yes")
    assert forgotten.returncode == 0 and "forgot" in forgotten.stdout
    gone = run_cli(env, tmp_path, "state", "show", uuids[0])
    assert gone.returncode == 1 and "no mapping" in gone.stderr


def test_the_two_documented_gitea_scopes_are_enough(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    gitea.state.add_token(gitea.login, "minimal-scopes-token", ["write:issue", "read:repository"])
    send_events(bugsink_project.dsn, ["zero_div"])
    env = cli_env(
        bugsink, gitea, tmp_path, bugsink_project.slug, GITEA_API_TOKEN="minimal-scopes-token"
    )
    synced = run_cli(env, tmp_path, "sync", "--json")
    assert synced.returncode == 0, synced.stderr
    assert json.loads(synced.stdout)["synced"] == 1
    checked = run_cli(env, tmp_path, "doctor")
    assert checked.returncode == 0, checked.stdout
    assert "without read:user its user is not shown" in checked.stdout
