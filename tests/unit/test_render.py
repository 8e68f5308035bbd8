"""The issue template: structure, escaping, limits and every event shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from markdown_it import MarkdownIt

from bugsink_sync.bugsink import Event, Issue
from bugsink_sync.render import (
    TITLE_MAX_BYTES,
    clip_bytes,
    fenced,
    find_marker,
    render_issue,
    render_title,
    utc,
)

UUID = "282fde12-b570-4dc4-afef-289fb2488b03"
URL = f"http://bugsink.test/issues/issue/{UUID}/event/last/"


def make_issue(**fields: Any) -> Issue:
    base: dict[str, Any] = {
        "id": UUID,
        "project": 1,
        "first_seen": "2026-01-13T18:24:22.5Z",
        "last_seen": "2026-01-16T05:03:02Z",
        "digested_event_count": 4,
        "calculated_type": "TypeError",
        "calculated_value": "t.map is not a function",
    }
    return Issue.model_validate({**base, **fields})


def python_event() -> Event:
    frame = {
        "filename": "shop/checkout.py",
        "function": "confirm",
        "lineno": 126,
        "context_line": "    raise RuntimeError('cart is locked')",
        "in_app": True,
    }
    return Event.model_validate(
        {
            "id": "e1",
            "data": {
                "platform": "python",
                "level": "error",
                "exception": {
                    "values": [
                        {
                            "type": "ConnectionError",
                            "value": "refused",
                            "stacktrace": {"frames": [frame]},
                        },
                        {
                            "type": "TypeError",
                            "value": "t.map is not a function",
                            "stacktrace": {"frames": [frame]},
                        },
                    ]
                },
                "request": {"url": "https://shop.example.org/", "method": "get"},
            },
        }
    )


def test_body_follows_the_seed_template() -> None:
    rendered = render_issue(make_issue(), python_event(), project="shop-test", issue_url=URL)
    body = rendered.body
    assert rendered.title == "[TypeError] t.map is not a function"
    for heading in (
        "## Error Details",
        "## Occurrence Statistics",
        "## Request Context",
        "## Stacktrace",
    ):
        assert f"\n{heading}\n" in "\n" + body
    assert "| **Type** | TypeError |" in body
    assert "| **Platform** | python |" in body
    assert "| **Level** | error |" in body
    assert "- **First Seen**: 2026-01-13 18:24:22 UTC" in body
    assert "- **Last Seen**: 2026-01-16 05:03:02 UTC" in body
    assert "- **Total Occurrences**: 4" in body
    assert "- **URL**: GET https://shop.example.org/" in body
    assert "<details>\n<summary>Click to expand</summary>" in body
    assert 'File "shop/checkout.py", line 126, in confirm' in body
    assert "During handling of the above exception" in body
    assert f"**Bugsink Issue**: {URL}" in body
    assert "**Project**: shop-test" in body
    assert find_marker(body) == UUID


def test_markdown_structure_is_what_the_template_says() -> None:
    body = render_issue(make_issue(), python_event(), project="p", issue_url=URL).body
    tokens = MarkdownIt("commonmark").enable("table").parse(body)
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert headings == ["Error Details", "Occurrence Statistics", "Request Context", "Stacktrace"]
    rows = [t for t in tokens if t.type == "tr_open"]
    assert len(rows) == 5  # header + 4 fields
    fences = [t for t in tokens if t.type == "fence"]
    assert len(fences) == 1 and fences[0].content.endswith("TypeError: t.map is not a function\n")


def test_message_event_without_exception_or_request() -> None:
    issue = make_issue(calculated_type="Log Message", calculated_value="Disk usage above 90%")
    event = Event.model_validate(
        {
            "id": "e",
            "data": {"message": "Disk usage above 90%", "level": "warning"},
            "stacktrace_md": "_No stacktrace available._",
        }
    )
    rendered = render_issue(issue, event, project="p", issue_url=URL)
    assert rendered.title == "[Log Message] Disk usage above 90%"
    assert "| **Level** | warning |" in rendered.body
    assert "| **Platform** | unknown |" in rendered.body
    assert "## Request Context" not in rendered.body
    assert "No stack trace was recorded for this event." in rendered.body


def test_no_event_at_all_still_renders() -> None:
    rendered = render_issue(make_issue(), None, project="p", issue_url=URL)
    assert rendered.title.startswith("[TypeError]")
    assert find_marker(rendered.body) == UUID


def test_javascript_frames_use_at_notation() -> None:
    event = Event.model_validate(
        {
            "id": "e",
            "data": {
                "platform": "javascript",
                "exception": {
                    "values": [
                        {
                            "type": "TypeError",
                            "value": "x",
                            "stacktrace": {
                                "frames": [
                                    {
                                        "filename": "app.min.js",
                                        "function": "t",
                                        "lineno": 1,
                                        "colno": 4242,
                                    }
                                ]
                            },
                        }
                    ]
                },
            },
        }
    )
    body = render_issue(make_issue(), event, project="p", issue_url=URL).body
    assert "at t (app.min.js:1:4242)" in body


def test_content_cannot_end_the_code_block_or_the_details() -> None:
    nasty = "```\n</details>\n## Injected heading\n````"
    event = Event.model_validate(
        {"id": "e", "data": {"exception": {"values": [{"type": "E", "value": nasty}]}}}
    )
    body = render_issue(make_issue(calculated_value=nasty), event, project="p", issue_url=URL).body
    tokens = MarkdownIt("commonmark").enable("table").parse(body)
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert "Injected heading" not in headings
    assert body.count("</details>") == 1 + sum(
        t.content.count("</details>") for t in tokens if t.type == "fence"
    )


def test_pipes_and_newlines_cannot_break_a_table_row() -> None:
    value = "a | b\n| **Level** | fake |"
    body = render_issue(make_issue(calculated_value=value), None, project="p", issue_url=URL).body
    tokens = MarkdownIt("commonmark").enable("table").parse(body)
    assert len([t for t in tokens if t.type == "tr_open"]) == 5


def test_title_is_one_line_and_at_most_255_bytes_never_cut_in_a_character() -> None:
    title = render_title("ValueError", "ü" * 300 + "\nsecond line")
    assert "\n" not in title
    assert len(title.encode("utf-8")) <= TITLE_MAX_BYTES
    assert title.endswith("…")
    title.encode("utf-8").decode("utf-8")  # valid UTF-8


def test_clip_bytes_keeps_short_text() -> None:
    assert clip_bytes("short", 255) == "short"
    assert clip_bytes("ééé", 5) == "é…"


def test_fence_is_longer_than_any_backtick_run() -> None:
    assert fenced("a ````` b").startswith("``````\n")
    assert fenced("plain").startswith("```\n")


def test_times_are_utc_whatever_the_zone() -> None:
    moment = datetime(2026, 1, 16, 7, 3, 2, tzinfo=timezone(timedelta(hours=2)))
    assert utc(moment) == "2026-01-16 05:03:02 UTC"
    assert utc(datetime(2026, 1, 16, 5, 3, 2)) == "2026-01-16 05:03:02 UTC"
    assert utc(datetime(2026, 1, 16, 5, 3, 2, tzinfo=UTC)) == "2026-01-16 05:03:02 UTC"


def test_long_stack_trace_is_shortened_within_budget_keeping_the_raise() -> None:
    frames = [{"filename": f"f{i}.py", "function": "g", "lineno": i} for i in range(5000)]
    event = Event.model_validate(
        {
            "id": "e",
            "data": {
                "platform": "python",
                "exception": {
                    "values": [
                        {
                            "type": "RecursionError",
                            "value": "deep",
                            "stacktrace": {"frames": frames},
                        }
                    ]
                },
            },
        }
    )
    body = render_issue(make_issue(), event, project="p", issue_url=URL, body_budget=20_000).body
    assert len(body.encode("utf-8")) <= 20_000
    assert "stack trace shortened" in body
    assert "RecursionError: deep" in body
    assert 'File "f4999.py"' in body
    assert find_marker(body) == UUID
