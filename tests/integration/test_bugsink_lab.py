"""Tests of the Bugsink lab harness against a real Bugsink (installed on first use).

They pin down what the product's integration tests rely on: fast starts from the template,
projects with DSNs, the scenarios' issues, raw envelopes of other SDKs, regression, scoped
tokens, webhooks, clean stops, and that older releases start too.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.lab.bugsink import (
    BugsinkApiError,
    BugsinkProject,
    BugsinkServer,
    ensure_template,
    send_envelope,
    send_events,
    start_bugsink,
)

pytestmark = pytest.mark.bugsink

BASIC_TYPES = Counter(
    {
        "ValueError": 1,
        "KeyError": 1,
        "ZeroDivisionError": 1,
        "PaymentGatewayError": 1,
        "RuntimeError": 1,
        "TimeoutError": 1,
        "Log Message": 2,
        "FileNotFoundError": 1,
    }
)


def _by_type(issues: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {issue["calculated_type"]: issue for issue in issues}


def _refused(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) != 0


# ------------------------------------------------------------------------------ lifecycle


def test_start_from_template_is_fast() -> None:
    ensure_template()  # built once per version; not part of the measured start
    started = time.monotonic()
    with start_bugsink() as server:
        elapsed = time.monotonic() - started
        assert server.schema()["info"]["version"] == "2.6.2"
        assert server.url == f"http://127.0.0.1:{server.port}"
    print(f"start from template: {elapsed:.2f} s")
    assert elapsed < 10.0  # ~0.6 s measured; generous for a loaded CI machine


def test_stop_really_stops() -> None:
    server = start_bugsink()
    data_dir, pid, port = server.data_dir, server.pid, server.port
    assert server.running
    server.stop()
    assert not server.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert _refused(port)
    assert not data_dir.exists()  # temporary data dir removed
    server.stop()  # idempotent


def test_restart_on_a_given_data_dir_keeps_the_data(tmp_path: Path) -> None:
    with start_bugsink(data_dir=tmp_path) as first:
        project = first.create_project("survives-restart")
        send_events(project.dsn, ["value_error"])
    with start_bugsink(data_dir=tmp_path) as second:
        assert len(second.list_issues(project.id)) == 1
        assert second.get_project(project.id).name == "survives-restart"
    assert (tmp_path / "gunicorn.log").exists()  # a given data dir is never removed


def test_project_has_int_id_slug_and_dsn(bugsink: BugsinkServer) -> None:
    project = bugsink.create_project("Shop Backend Lab")
    assert isinstance(project.id, int)
    assert project.slug == "shop-backend-lab"
    key = project.dsn.split("//")[1].split("@")[0]
    assert len(key) == 32
    assert project.dsn == f"http://{key}@127.0.0.1:{bugsink.port}/{project.id}"
    assert bugsink.get_project(project.id) == project


# ------------------------------------------------------------------------------- scenarios


def test_basic_scenarios_make_nine_issues(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject
) -> None:
    sent = send_events(bugsink_project.dsn, [])
    assert len(sent) == 12
    issues = bugsink.list_issues(bugsink_project.id)
    assert Counter(issue["calculated_type"] for issue in issues) == BASIC_TYPES
    by_type = _by_type(issues)
    assert by_type["TimeoutError"]["digested_event_count"] == 4
    assert by_type["PaymentGatewayError"]["calculated_value"] == "charge of 42 EUR failed"
    staging = bugsink.events(by_type["FileNotFoundError"]["id"])[0]
    data = bugsink.get_event(staging["id"])["data"]
    assert (data["environment"], data["release"]) == ("staging", "shop@1.2.3")
    assert data["tags"] == {"customer_tier": "gold", "region": "eu-west"}


def test_unique_makes_distinct_issues_and_repeated_one(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject
) -> None:
    started = time.monotonic()
    sent = send_events(bugsink_project.dsn, ["unique:bulk"], count=40)
    elapsed = time.monotonic() - started
    print(f"40 distinct issues via sentry-sdk: {elapsed:.2f} s ({40 / elapsed:.0f} events/s)")
    send_events(bugsink_project.dsn, ["unique:disk-full", "repeated:7"])
    issues = bugsink.list_issues(bugsink_project.id)
    types = {issue["calculated_type"] for issue in issues}
    assert {event["type"] for event in sent} <= types
    assert "UniqueDiskFullError" in types
    assert len(issues) == 40 + 2
    assert _by_type(issues)["TimeoutError"]["digested_event_count"] == 7


def test_environment_and_release_options(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject
) -> None:
    send_events(bugsink_project.dsn, ["zero_div"], environment="qa", release="shop@9.9.9")
    (issue,) = bugsink.list_issues(bugsink_project.id)
    data = bugsink.get_event(bugsink.events(issue["id"])[0]["id"])["data"]
    assert (data["environment"], data["release"]) == ("qa", "shop@9.9.9")
    assert issue["events_at"] == ["shop@9.9.9"]


def test_failed_sends_raise(bugsink_project: BugsinkProject) -> None:
    key = bugsink_project.dsn.split("//")[1].split("@")[0]
    wrong_key = bugsink_project.dsn.replace(key, "0" * 32)
    with pytest.raises(RuntimeError, match="dropped"):
        send_events(wrong_key, ["value_error"])
    with pytest.raises(BugsinkApiError) as raised:
        send_envelope(wrong_key, {"message": "lost"})
    assert raised.value.status_code == 403


# ------------------------------------------------------------------------- raw envelopes

JS_MINIFIED: dict[str, Any] = {
    "platform": "javascript",
    "level": "error",
    "exception": {
        "values": [
            {
                "type": "TypeError",
                "value": "Cannot read properties of undefined (reading 'id')",
                "stacktrace": {
                    "frames": [
                        {
                            "filename": "https://shop.example.org/static/js/main.3f2a1b.min.js",
                            "abs_path": "https://shop.example.org/static/js/main.3f2a1b.min.js",
                            "function": "r",
                            "lineno": 1,
                            "colno": 48213,
                            "in_app": True,
                        }
                    ]
                },
            }
        ]
    },
    "sdk": {"name": "sentry.javascript.browser", "version": "8.40.0"},
}
GO_EVENT: dict[str, Any] = {
    "platform": "go",
    "level": "error",
    "exception": {
        "values": [
            {
                "type": "*errors.errorString",
                "value": "sql: no rows in result set",
                "stacktrace": {
                    "frames": [
                        {
                            "function": "handleOrder",
                            "module": "shop/internal/orders",
                            "abs_path": "/src/shop/internal/orders/handler.go",
                            "lineno": 88,
                        }
                    ]
                },
            }
        ]
    },
}
JAVA_EVENT: dict[str, Any] = {
    "platform": "java",
    "level": "fatal",
    "exception": {
        "values": [
            {
                "type": "NullPointerException",
                "module": "java.lang",
                "value": 'Cannot invoke "Order.getId()" because "order" is null',
                "stacktrace": {
                    "frames": [
                        {
                            "module": "org.example.shop.OrderService",
                            "function": "confirm",
                            "filename": "OrderService.java",
                            "lineno": 57,
                        }
                    ]
                },
            }
        ]
    },
}
MESSAGE_WITH_TAG_PAIRS: dict[str, Any] = {
    "platform": "node",
    "level": "warning",
    "message": "Queue backlog above 10k",
    "tags": [["queue", "emails"], ["region", "eu-west"]],
}
BARE_EXCEPTION: dict[str, Any] = {  # no platform, no level: 2.6.2 accepts it
    "exception": {"values": [{"type": "BareError", "value": "sent without platform"}]},
}


def test_raw_envelopes_are_digested(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject
) -> None:
    events = [JS_MINIFIED, GO_EVENT, JAVA_EVENT, MESSAGE_WITH_TAG_PAIRS, BARE_EXCEPTION]
    ids = [send_envelope(bugsink_project.dsn, event) for event in events]
    assert all(len(event_id) == 32 for event_id in ids)
    by_type = _by_type(bugsink.list_issues(bugsink_project.id))
    assert set(by_type) == {
        "TypeError",
        "*errors.errorString",
        "NullPointerException",
        "Log Message",
        "BareError",
    }
    message = by_type["Log Message"]
    assert message["calculated_value"] == "Queue backlog above 10k"
    data = bugsink.get_event(bugsink.events(message["id"])[0]["id"])["data"]
    assert data["tags"] == [["queue", "emails"], ["region", "eu-west"]]  # stored as sent
    assert data["event_id"] == ids[3]


# ------------------------------------------------------------------------- issue actions


def test_resolve_then_regress_unresolves(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject
) -> None:
    send_events(bugsink_project.dsn, ["value_error"])
    (issue,) = bugsink.list_issues(bugsink_project.id)
    assert bugsink.resolve(issue["id"])["is_resolved"] is True
    assert bugsink.list_issues(bugsink_project.id, state="unresolved") == []
    send_events(bugsink_project.dsn, ["regress"])
    after = bugsink.get_issue(issue["id"])
    assert after["is_resolved"] is False
    assert after["digested_event_count"] == 2
    assert len(bugsink.events(issue["id"])) == 2


def test_reopen_mute_and_errors(bugsink: BugsinkServer, bugsink_project: BugsinkProject) -> None:
    send_events(bugsink_project.dsn, ["key_error"])
    (issue,) = bugsink.list_issues(bugsink_project.id)
    bugsink.resolve(issue["id"])
    with pytest.raises(BugsinkApiError) as raised:
        bugsink.resolve(issue["id"])
    assert raised.value.status_code == 400
    assert bugsink.reopen(issue["id"])["is_resolved"] is False
    assert bugsink.mute(issue["id"])["is_muted"] is True
    assert bugsink.get_issue(issue["friendly_id"])["id"] == issue["id"]


def test_scoped_token_gets_403_on_resolve(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject
) -> None:
    send_events(bugsink_project.dsn, ["zero_div"])
    token = bugsink.create_token(issues_read=True, events_read=True, projects_read=True)
    with bugsink.with_token(token) as reader:
        (issue,) = reader.list_issues(bugsink_project.id)
        assert len(reader.events(issue["id"])) == 1
        with pytest.raises(BugsinkApiError) as raised:
            reader.resolve(issue["id"])
    assert raised.value.status_code == 403
    assert "issues:triage" in raised.value.body


# ------------------------------------------------------------------------------- webhooks


class _Receiver(BaseHTTPRequestHandler):
    """Records webhook POST bodies on the server object."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.server.bodies.append(json.loads(self.rfile.read(length)))  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


@pytest.fixture
def webhook_bodies() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    server.bodies = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", server.bodies  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


def test_webhook_receives_new_and_regressed(
    bugsink: BugsinkServer,
    bugsink_project: BugsinkProject,
    webhook_bodies: tuple[str, list[dict[str, Any]]],
) -> None:
    url, bodies = webhook_bodies
    assert bugsink.add_webhook(bugsink_project.id, url) > 0
    send_events(bugsink_project.dsn, ["value_error"])  # eager: the POST happens during ingest
    issue_id = bodies[0]["id"]
    bugsink.resolve(issue_id)
    send_events(bugsink_project.dsn, ["regress"])
    assert [body["alert_reason"] for body in bodies] == ["NEW", "REGRESSED"]
    assert bodies[0]["project_name"] == bugsink_project.name
    assert bodies[0]["url"].startswith(bugsink.url + "/issues/issue/")


# --------------------------------------------------------------------------- old release


def test_old_release_2_2_1_starts_and_reports_its_version() -> None:
    with start_bugsink("2.2.1") as server:
        schema = server.schema()
        assert schema["info"]["version"] == "2.2.1"
        paths = schema["paths"]
        assert "/api/canonical/0/issues/{id}/resolve/" in paths
        assert "/api/canonical/0/issues/{id}/reopen/" not in paths
        project = server.create_project("legacy")
        send_events(project.dsn, ["value_error"])
        (issue,) = server.list_issues(project.id)
        with pytest.raises(BugsinkApiError) as raised:
            server.reopen(issue["id"])
        assert raised.value.status_code == 404
        assert raised.value.content_type.startswith("text/html")
