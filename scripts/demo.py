"""Run the main job once on real input and show what it made (see `./scripts/demo`)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.lab.bugsink import BugsinkServer, send_envelope, send_events, start_bugsink  # noqa: E402
from tests.lab.events import javascript_error  # noqa: E402
from tests.lab.gitea import GiteaTestServer  # noqa: E402

OWNER, REPO = "torbo", "flyer-crawler.projectium.com"
JS_ERROR = javascript_error("test", "https://flyer-crawler-test.projectium.com/")


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def feed_bugsink(bugsink: BugsinkServer) -> None:
    """The seed's projects (and one it does not configure), with real errors in them."""
    team = bugsink.create_team("Flyer Crawler")
    projects = {
        name: bugsink.create_project(name, team)
        for name in (
            "flyer-crawler-backend",
            "flyer-crawler-backend-test",
            "flyer-crawler-frontend-test",
            "marketing-site",
        )
    }
    send_events(
        projects["flyer-crawler-backend"].dsn, ["value_error", "custom", "request", "repeated"]
    )
    send_events(
        projects["flyer-crawler-backend-test"].dsn, ["zero_div", "message"], environment="test"
    )
    send_envelope(projects["flyer-crawler-frontend-test"].dsn, JS_ERROR)
    send_events(projects["marketing-site"].dsn, ["key_error"])
    for name, project in projects.items():
        count = len(bugsink.list_issues(project.id, state="unresolved"))
        print(f"  {name}: {count} unresolved issue(s)")


def sync(env: dict[str, str]) -> float:
    started = time.monotonic()
    subprocess.run([str(ROOT / ".venv/bin/bugsink-sync"), "sync"], env=env, check=True)
    return time.monotonic() - started


def show_gitea_issues(gitea_url: str, token: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{gitea_url}/api/v1/repos/{OWNER}/{REPO}/issues",
        params={"state": "all", "type": "issues", "limit": 50},
        headers={"Authorization": f"token {token}"},
        trust_env=False,
    )
    response.raise_for_status()
    issues: list[dict[str, Any]] = sorted(response.json(), key=lambda i: i["number"])
    for issue in issues:
        labels = ", ".join(label["name"] for label in issue["labels"])
        print(f"  #{issue['number']}  {issue['title']}")
        print(f"       labels: {labels}\n       {issue['html_url']}")
    return issues


def main() -> int:
    started = time.monotonic()
    say("Starting a real Bugsink (first run installs it from PyPI: about a minute)")
    with (
        start_bugsink() as bugsink,
        GiteaTestServer() as gitea,
        tempfile.TemporaryDirectory() as tmp,
    ):
        print(f"  Bugsink {bugsink.version} at {bugsink.url}")
        say("Sending real errors with sentry-sdk")
        feed_bugsink(bugsink)
        token = secrets.token_hex(20)
        gitea.state.add_user(OWNER, token)
        gitea.state.add_repo(OWNER, REPO)
        print(f"\n  Gitea test server at {gitea.url}, repository {OWNER}/{REPO}")
        env = {
            **os.environ,
            "BUGSINK_URL": bugsink.url,
            "BUGSINK_TOKEN": bugsink.token,
            "GITEA_URL": gitea.url,
            "GITEA_API_TOKEN": token,
            "GITEA_OWNER": OWNER,
            "GITEA_REPO": REPO,
            "BUGSINK_SYNC_ENABLED": "true",
            "BUGSINK_SYNC_SQLITE_PATH": str(Path(tmp) / "state.sqlite3"),
        }
        env.pop("REDIS_URL", None)
        env.pop("BUGSINK_SYNC_CONFIG", None)  # the seed's defaults: no config file needed
        say("bugsink-sync sync")
        first = sync(env)
        say("Gitea issues created")
        issues = show_gitea_issues(gitea.url, token)
        if issues:
            say(f"Body of #{issues[-1]['number']}")
            print(issues[-1]["body"])
        say("bugsink-sync sync again (nothing new: each error is filed once)")
        second = sync(env)
        unresolved = {
            p["slug"]: len(bugsink.list_issues(p["id"], state="unresolved"))
            for p in bugsink.call("GET", "projects/")["results"]
        }
        say("Unresolved in Bugsink afterwards")
        for slug, count in unresolved.items():
            print(f"  {slug}: {count}")
    total = time.monotonic() - started
    say(f"Done: {len(issues)} issues; sync {first:.1f} s, then {second:.1f} s; demo {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
