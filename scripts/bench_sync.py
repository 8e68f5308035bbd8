"""Benchmark: one sync of N new errors (real Bugsink, Gitea test server, SQLite state).

Reports wall time, issues per second and the peak memory of the sync process. Not a test:
it asserts nothing about speed. Usage: .venv/bin/python scripts/bench_sync.py [N]
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.lab.bugsink import send_events, start_bugsink  # noqa: E402
from tests.lab.gitea import GiteaTestServer  # noqa: E402


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    with (
        start_bugsink() as bugsink,
        GiteaTestServer() as gitea,
        tempfile.TemporaryDirectory() as tmp,
    ):
        project = bugsink.create_project("bench")
        started = time.monotonic()
        send_events(project.dsn, ["unique:bench"], count=count)
        print(f"sent {count} errors in {time.monotonic() - started:.1f} s", file=sys.stderr)
        token = secrets.token_hex(20)
        gitea.state.add_user("bench", token)
        gitea.state.add_repo("bench", "repo")
        config = Path(tmp) / "sync.toml"
        config.write_text('[[projects]]\nslug = "bench"\nlabels = ["env:test"]\n')
        env = {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("BUGSINK", "GITEA", "REDIS"))
            },
            "BUGSINK_URL": bugsink.url,
            "BUGSINK_TOKEN": bugsink.token,
            "GITEA_URL": gitea.url,
            "GITEA_API_TOKEN": token,
            "GITEA_OWNER": "bench",
            "GITEA_REPO": "repo",
            "BUGSINK_SYNC_ENABLED": "true",
            "BUGSINK_SYNC_CONFIG": str(config),
            "BUGSINK_SYNC_SQLITE_PATH": str(Path(tmp) / "state.sqlite3"),
        }
        for label, args in (
            ("first sync (--backfill)", ["--backfill"]),
            ("second sync (nothing new)", []),
        ):
            began = time.monotonic()
            result = subprocess.run(
                [sys.executable, "-m", "bugsink_sync.cli", "sync", "--json", *args],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            seconds = time.monotonic() - began
            report = json.loads(result.stdout)
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            rate = report["synced"] / seconds if report["synced"] else 0
            print(
                f"{label}: synced {report['synced']}, skipped {report['skipped']}, "
                f"failed {report['failed']} in {seconds:.2f} s ({rate:.0f} issues/s); "
                f"peak RSS of sync processes so far {peak:.0f} MiB"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
