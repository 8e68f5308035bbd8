"""Every event shape, sent for real to Bugsink (sentry-sdk and raw envelopes of other
SDKs), synced to the Gitea test server, and read back with a Markdown parser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bugsink_sync.render import WORD_JOINER, find_marker
from tests.lab.bugsink import BugsinkProject, BugsinkServer, send_envelope, send_events
from tests.lab.events import javascript_error
from tests.lab.gitea.fixtures import GiteaRepoFixture
from tests.lab.runs import cli_env, run_cli
from tests.unit.markdown_structure import gitea_findings, structure

pytestmark = pytest.mark.bugsink

HOSTILE = (
    "@admin </details> ## Injected <script>alert(1)</script> | #12 owner/repo#3 deadbeef1234 `x`"
)
SHAPES: dict[str, dict[str, Any]] = {
    "javascript": javascript_error("production", "https://shop.example.org/cart?id=1|2")
    | {"tags": [["browser", "Firefox"], ["release", "1.2"]]},
    "go": {
        "platform": "go",
        "exception": {
            "values": [
                {
                    "type": "*errors.errorString",
                    "value": "sql: no rows in result set",
                    "stacktrace": {
                        "frames": [
                            {
                                "function": "main.handler",
                                "module": "main",
                                "abs_path": "/src/shop/main.go",
                                "lineno": 42,
                            },
                        ]
                    },
                }
            ]
        },
    },
    "java": {
        "platform": "java",
        "exception": {
            "values": [
                {"type": "java.io.IOException", "value": "disk full", "module": "java.io"},
                {
                    "type": "IllegalStateException",
                    "value": "cannot save order",
                    "module": "java.lang",
                    "stacktrace": {
                        "frames": [
                            {
                                "module": "com.shop.Orders",
                                "function": "save",
                                "filename": "Orders.java",
                                "lineno": 77,
                                "in_app": True,
                            },
                        ]
                    },
                },
            ]
        },
    },
    "message_only": {
        "platform": "python",
        "message": "Nightly export finished with 3 warnings",
        "level": "warning",
    },
    "no_platform_no_level": {
        "exception": {"values": [{"type": "Bare", "value": "nothing else known"}]}
    },
    "odd_environment": {
        "platform": "python",
        "environment": "  Prod\tuction ",
        "message": "odd env",
    },
    "hostile": {
        "platform": "python",
        "exception": {"values": [{"type": "Evil", "value": HOSTILE}]},
    },
    "huge_trace": {
        "platform": "python",
        "exception": {
            "values": [
                {
                    "type": "RecursionError",
                    "value": "deep",
                    "stacktrace": {
                        "frames": [
                            {
                                "filename": f"lib/f{i}.py",
                                "function": "recurse",
                                "lineno": i,
                                "in_app": i == 999,
                                "context_line": "x" * 200,
                            }
                            for i in range(1000)
                        ]
                    },
                }
            ]
        },
    },
}


def test_every_shape_renders_safely_through_the_real_services(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    for shape in SHAPES.values():
        send_envelope(bugsink_project.dsn, shape)
    send_events(bugsink_project.dsn, ["custom", "logging", "request"])  # sentry-sdk too
    env = cli_env(
        bugsink,
        gitea,
        tmp_path,
        bugsink_project.slug,
        BUGSINK_SYNC_BODY_BUDGET="16384",
        TZ="Pacific/Kiritimati",
        LC_ALL="C.UTF-8",  # far from UTC: times must not move
    )

    result = run_cli(env, tmp_path, "sync", "--json")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["synced"] == len(SHAPES) + 3
    issues = {i.title.replace(WORD_JOINER, ""): i for i in gitea.issues()}
    bugsink_issues = {i["id"]: i for i in bugsink.list_issues(bugsink_project.id)}
    for title, issue in issues.items():
        found = structure(issue.body)
        assert len(issue.body.encode()) <= 16384, title
        assert found.headings[:2] == ["Error Details", "Occurrence Statistics"], title
        assert found.headings[-1] == "Stacktrace" and len(found.rows) == 5, title
        assert (found.details_open, found.details_close) == (1, 1), title
        assert gitea_findings(found.text_outside_code) == {}, title
        assert gitea_findings(issue.title) == {}, title
        first_seen = bugsink_issues[find_marker(issue.body)]["first_seen"]  # UTC, with Z
        assert f"- **First Seen**: {first_seen[:10]} {first_seen[11:19]} UTC" in issue.body

    js = issues["[TypeError] t.map is not a function"].body
    assert "at Xe (/assets/index-4f2a.js:1:88211)" in js
    assert "- **URL**: ` GET https://shop.example.org/cart?id=1|2 `" in js
    go = issues["[*errors.errorString] sql: no rows in result set"].body
    assert "at main.handler (/src/shop/main.go:42)" in go
    java = issues["[IllegalStateException] cannot save order"].body
    assert (
        "at com.shop.Orders.save(Orders.java:77)" in java
        and "java.io.IOException: disk full" in java
    )
    message = issues["[Log Message] Nightly export finished with 3 warnings"].body
    assert "| **Level** | ` warning ` |" in message and "No stack trace was recorded" in message
    bare = issues["[Bare] nothing else known"].body
    assert "| **Platform** | ` unknown ` |" in bare and "| **Level** | ` error ` |" in bare
    hostile = issues[f"[Evil] {HOSTILE}"]
    assert "Injected" not in structure(hostile.body).headings
    huge = issues["[RecursionError] deep"].body
    assert "stack trace shortened" in huge and 'File "lib/f999.py", line 999, in recurse' in huge
