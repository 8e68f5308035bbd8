"""The three promises, checked from the outside: Bugsink, Gitea and the state store.

- I1: each Bugsink issue has at most one Gitea issue (by the marker in its body);
- I2: after a completed run, every Bugsink issue has its Gitea issue and record;
- I3: a resolved Bugsink issue has its Gitea issue, and its record points at it.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import redis

from bugsink_sync.render import find_marker
from tests.lab.bugsink import BugsinkServer
from tests.lab.gitea.fixtures import GiteaRepoFixture


@dataclass(frozen=True)
class StoreLocation:
    """Where a test's state lives: an SQLite file, or a Redis DB."""

    sqlite_path: Path | None = None
    redis_db: int | None = None

    def records(self) -> dict[str, int]:
        """Bugsink UUID -> recorded Gitea issue number."""
        if self.sqlite_path is not None:
            if not self.sqlite_path.exists():
                return {}
            with sqlite3.connect(self.sqlite_path) as db:
                rows = db.execute("SELECT issue_uuid, value FROM synced").fetchall()
            return {uuid: json.loads(value)["gitea_issue_number"] for uuid, value in rows}
        client = redis.Redis(db=self.redis_db, decode_responses=True)
        found = {}
        for key in client.scan_iter(match="bugsink:synced:*"):
            value = client.get(key)
            if value is not None:
                found[key.removeprefix("bugsink:synced:")] = json.loads(value)["gitea_issue_number"]
        return found


def check_invariants(
    bugsink: BugsinkServer,
    project_id: int,
    gitea: GiteaRepoFixture,
    store: StoreLocation,
    *,
    completed: bool,
) -> dict[str, int]:
    """Assert I1 and I3 (and I2 when a run completed); returns figures for the report."""
    issues = bugsink.list_issues(project_id)
    markers = [find_marker(i.body) for i in gitea.issues()]
    per_uuid = Counter(m for m in markers if m)
    records = store.records()
    number_of = {find_marker(i.body): i.number for i in gitea.issues()}
    duplicates = {uuid: n for uuid, n in per_uuid.items() if n > 1}
    assert not duplicates, f"I1 broken: several Gitea issues for {duplicates}"
    for issue in issues:
        if issue["is_resolved"]:
            assert per_uuid[issue["id"]] == 1, f"I3 broken: {issue['id']} resolved, no Gitea issue"
            assert records.get(issue["id"]) == number_of[issue["id"]], (
                f"I3 broken: {issue['id']} resolved but not recorded as its Gitea issue"
            )
        if completed:
            assert per_uuid[issue["id"]] == 1, f"I2 broken: {issue['id']} has no Gitea issue"
            assert records.get(issue["id"]) == number_of[issue["id"]], f"I2: {issue['id']}"
    lost = [i["id"] for i in issues if completed and not i["is_resolved"]]
    assert not lost, f"I2 broken: still unresolved after a completed run: {lost}"
    return {"bugsink": len(issues), "gitea": len(markers), "duplicates": len(duplicates)}
