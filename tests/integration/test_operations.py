"""Operating the CLI: labels ensure, progress in a terminal only, structured logs, and no
secret in any output."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.lab.bugsink import BugsinkProject, BugsinkServer, send_events
from tests.lab.gitea.fixtures import GiteaRepoFixture
from tests.lab.runs import cli_env, run_cli

pytestmark = pytest.mark.bugsink


CONFIG = (
    '[[projects]]\nslug = "{slug}"\nlabels = ["env:test", "team:core"]\n\n'
    '[labels]\n"env:test" = "#2563eb"\n"source:bugsink" = "#10b981"\n"priority:high" = "#ff0000"\n'
)


def env_for(
    bugsink: BugsinkServer, gitea: GiteaRepoFixture, tmp_path: Path, slug: str, **extra: str
) -> dict[str, str]:
    return cli_env(bugsink, gitea, tmp_path, slug, config_text=CONFIG.format(slug=slug), **extra)


def test_labels_ensure_creates_the_missing_ones_and_changes_nothing_else(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    gitea.state.add_label(gitea.owner, gitea.repo, "env:test", "#000000")  # a different colour
    result = run_cli(
        env_for(bugsink, gitea, tmp_path, bugsink_project.slug), tmp_path, "labels", "ensure"
    )
    assert result.returncode == 0, result.stderr
    labels = {
        label.name: label.color.lstrip("#")
        for label in gitea.state.labels_of(gitea.owner, gitea.repo)
    }
    assert labels == {
        "env:test": "000000",
        "team:core": "6b7280",
        "source:bugsink": "10b981",
        "priority:high": "ff0000",
    }
    assert (
        "exists   env:test" in result.stdout and "created  priority:high (#ff0000)" in result.stdout
    )
    again = run_cli(
        env_for(bugsink, gitea, tmp_path, bugsink_project.slug), tmp_path, "labels", "ensure"
    )
    assert "created" not in again.stdout
    assert gitea.issues() == []


def test_a_terminal_sees_progress_a_pipe_sees_only_the_result(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    send_events(bugsink_project.dsn, ["unique:progress"], count=3)
    gitea.add_fault("POST", "/issues$", "delay", times=None, seconds=0.3)
    env = env_for(bugsink, gitea, tmp_path, bugsink_project.slug, TERM="xterm", COLUMNS="120")
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "bugsink_sync.cli", "sync"],
        env=env,
        cwd=tmp_path,
        stdin=follower,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    process.wait(30)
    os.close(leader)
    text = seen.decode(errors="replace")
    assert process.returncode == 0
    assert "issue(s) looked at" in text and bugsink_project.slug in text
    assert "synced 3, skipped 0, failed 0" in text

    send_events(bugsink_project.dsn, ["zero_div"])
    piped = run_cli(env, tmp_path, "sync", "--json")
    assert "looked at" not in piped.stdout + piped.stderr
    assert json.loads(piped.stdout)["synced"] == 1


def test_json_logs_carry_run_project_and_issue_and_no_secret_anywhere(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    send_events(bugsink_project.dsn, ["zero_div", "key_error"])
    jwt_secret = "jwt-secret-that-must-never-show-" + "x" * 10
    webhook = "webhook-secret-never-shown-123"
    env = env_for(
        bugsink,
        gitea,
        tmp_path,
        bugsink_project.slug,
        BUGSINK_SYNC_LOG_FORMAT="json",
        JWT_SECRET=jwt_secret,
        BUGSINK_SYNC_WEBHOOK_SECRET=webhook,
        REDIS_URL="redis://:redis-password-never-shown@127.0.0.1:6379",
        BUGSINK_SYNC_STATE_DB="7",
    )
    gitea.add_fault("POST", "/issues$", "error", times=1, status=500)  # one failure, logged
    ok = run_cli(env, tmp_path, "-v", "sync", "--json")
    entries = [json.loads(line) for line in ok.stderr.splitlines() if line.startswith("{")]
    created = [e for e in entries if e["message"].startswith("created Gitea issue")]
    failed = [e for e in entries if e["message"].startswith("failed:")]
    assert created and failed
    run_id = json.loads(ok.stdout)["run_id"]
    for entry in created + failed:
        assert entry["run_id"] == run_id
        assert entry["project"] == bugsink_project.slug and len(entry["issue"]) == 36

    outputs = [ok.stdout + ok.stderr]
    for broken in (
        {"BUGSINK_TOKEN": "a" * 40},
        {"GITEA_URL": "http://127.0.0.1:1"},
        {"REDIS_URL": "redis://:redis-password-never-shown@127.0.0.1:1"},
    ):
        for args in (("-v", "sync"), ("doctor",), ("doctor", "--json"), ("state", "list")):
            result = run_cli(env | broken, tmp_path, *args)
            outputs.append(result.stdout + result.stderr)
    everything = "\n".join(outputs)
    for secret in (
        bugsink.token,
        gitea.token,
        "a" * 40,
        jwt_secret,
        webhook,
        "redis-password-never-shown",
    ):
        assert secret not in everything
