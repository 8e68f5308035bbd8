"""The issue template: structure, escaping, limits and every event shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from bugsink_sync.bugsink import Event, Issue
from bugsink_sync.render import (
    BODY_FIELDS,
    NO_STACKTRACE,
    SHORTENED,
    TITLE_MAX_BYTES,
    WORD_JOINER,
    Templates,
    cell,
    clean_text,
    clip_bytes,
    code,
    fenced,
    find_marker,
    neutralise,
    render_issue,
    render_title,
    template_problems,
    utc,
)
from tests.unit.markdown_structure import gitea_findings, structure

UUID = "282fde12-b570-4dc4-afef-289fb2488b03"
URL = f"http://bugsink.test/issues/issue/{UUID}/event/last/"
SEED_HEADINGS = ["Error Details", "Occurrence Statistics", "Request Context", "Stacktrace"]


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


def frame(name: str, line: int, *, in_app: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "filename": f"shop/{name}.py",
        "function": name,
        "lineno": line,
        "in_app": in_app,
    } | extra


def python_event(**data: Any) -> Event:
    raised = frame("confirm", 126, context_line="    raise RuntimeError('cart is locked')")
    base = {
        "platform": "python",
        "level": "error",
        "exception": {
            "values": [
                {
                    "type": "ConnectionError",
                    "value": "refused",
                    "stacktrace": {"frames": [frame("connect", 9)]},
                },
                {
                    "type": "TypeError",
                    "value": "t.map is not a function",
                    "stacktrace": {"frames": [raised]},
                },
            ]
        },
        "request": {"url": "https://shop.example.org/", "method": "get"},
    }
    return Event.model_validate({"id": "e1", "data": base | data})


def render(
    issue: Issue | None = None, event: Event | None = None, **kwargs: Any
) -> tuple[str, str]:
    rendered = render_issue(
        issue or make_issue(), event, project="shop-test", issue_url=URL, **kwargs
    )
    return rendered.title, rendered.body


def test_body_follows_the_seed_template() -> None:
    title, body = render(event=python_event())
    assert title == "[TypeError] t.map is not a function"
    found = structure(body)
    assert found.headings == SEED_HEADINGS
    assert found.rows == [
        ["Field", "Value"],
        ["**Type**", "`` TypeError ``"[1:-1]],
        ["**Message**", "` t.map is not a function `"],
        ["**Platform**", "` python `"],
        ["**Level**", "` error `"],
    ]
    assert "- **First Seen**: 2026-01-13 18:24:22 UTC" in body
    assert "- **Last Seen**: 2026-01-16 05:03:02 UTC" in body
    assert "- **Total Occurrences**: 4" in body
    assert "- **URL**: ` GET https://shop.example.org/ `" in body
    assert (found.details_open, found.details_close) == (1, 1)
    (trace,) = found.fences
    assert 'File "shop/confirm.py", line 126, in confirm' in trace
    assert "During handling of the above exception" in trace
    assert trace.rstrip().endswith("TypeError: t.map is not a function")
    assert f"**Bugsink Issue**: {URL}\n**Project**: shop-test" in body
    assert find_marker(body) == UUID


def test_message_event_without_exception_or_request() -> None:
    issue = make_issue(calculated_type="Log Message", calculated_value="Disk usage above 90%")
    event = Event.model_validate(
        {
            "id": "e",
            "data": {"message": "Disk usage above 90%", "level": "warning"},
            "stacktrace_md": "_No stacktrace available._",
        }
    )
    title, body = render(issue, event)
    assert title == "[Log Message] Disk usage above 90%"
    found = structure(body)
    assert found.headings == ["Error Details", "Occurrence Statistics", "Stacktrace"]
    assert found.rows[3] == ["**Platform**", "` unknown `"] and found.rows[4] == [
        "**Level**",
        "` warning `",
    ]
    assert NO_STACKTRACE in body and found.fences == []


def test_log_entry_and_legacy_message_shapes() -> None:
    logentry = Event.model_validate(
        {
            "id": "e",
            "data": {"logentry": {"message": "Order %s failed", "formatted": "Order O-1 failed"}},
        }
    )
    legacy = Event.model_validate({"id": "e", "data": {"message": {"message": "legacy text"}}})
    assert (
        render(make_issue(calculated_type="", calculated_value=""), logentry)[0].replace(
            WORD_JOINER, ""
        )
        == "[Error] Order O-1 failed"
    )
    assert (
        render(make_issue(calculated_type="", calculated_value=""), legacy)[0]
        == "[Error] legacy text"
    )


def test_no_event_at_all_still_renders() -> None:
    title, body = render(event=None)
    assert title.startswith("[TypeError]")
    assert find_marker(body) == UUID and NO_STACKTRACE in body


@pytest.mark.parametrize(
    ("platform", "frame_data", "expected"),
    [
        (
            "javascript",
            {"filename": "app.min.js", "function": "t", "lineno": 1, "colno": 4242},
            "at t (app.min.js:1:4242)",
        ),
        (
            "java",
            {
                "module": "com.shop.Cart",
                "function": "confirm",
                "filename": "Cart.java",
                "lineno": 42,
            },
            "at com.shop.Cart.confirm(Cart.java:42)",
        ),
        (
            "go",
            {"module": "main", "function": "handler", "abs_path": "/src/main.go", "lineno": 7},
            "at handler (/src/main.go:7)",
        ),
        ("python", {"module": "shop.cart", "function": "f"}, 'File "shop.cart", line ?, in f'),
    ],
)
def test_frames_of_other_sdks(platform: str, frame_data: dict[str, Any], expected: str) -> None:
    event = Event.model_validate(
        {
            "id": "e",
            "data": {
                "platform": platform,
                "exception": {
                    "values": [{"type": "E", "value": "x", "stacktrace": {"frames": [frame_data]}}]
                },
            },
        }
    )
    assert expected in render(event=event)[1]


def test_threads_without_exception_are_shown() -> None:
    event = Event.model_validate(
        {
            "id": "e",
            "data": {
                "message": "stuck",
                "threads": {
                    "values": [
                        {"id": 1, "name": "main", "stacktrace": {"frames": [frame("loop", 3)]}}
                    ]
                },
            },
        }
    )
    body = render(event=event)[1]
    assert (
        "Stack of main:" in body and 'File "shop/loop.py", line 3, in loop' not in body
    )  # no platform
    assert "at loop (shop/loop.py:3)" in body


def test_markdown_and_html_in_values_are_shown_not_interpreted() -> None:
    nasty = "```\n</details>\n## Injected heading\n<img src=x onerror=alert(1)> **bold** [x](http://evil)"
    event = Event.model_validate(
        {"id": "e", "data": {"exception": {"values": [{"type": "E", "value": nasty}]}}}
    )
    found = structure(render(make_issue(calculated_value=nasty), event)[1])
    assert found.headings == ["Error Details", "Occurrence Statistics", "Stacktrace"]
    assert (found.details_open, found.details_close) == (1, 1)
    assert len(found.rows) == 5
    assert "Injected heading" not in found.text_outside_code
    assert "onerror" not in found.text_outside_code and "evil" not in found.text_outside_code
    assert any(nasty.strip() in fence for fence in found.fences)  # the full message, literally


def test_pipes_and_newlines_cannot_break_a_table_row() -> None:
    value = "a | b\n| **Level** | fake |"
    found = structure(render(make_issue(calculated_value=value))[1])
    assert len(found.rows) == 5 and all(len(row) == 2 for row in found.rows)


def test_mentions_and_references_neither_ping_nor_link() -> None:
    value = "@admin please look at #12, owner/repo#3 and commit deadbeef1234 :tada: @org/team !7"
    title, body = render(make_issue(calculated_value=value))
    assert gitea_findings(title) == {}
    assert gitea_findings(structure(body).text_outside_code) == {}
    assert title.replace(WORD_JOINER, "") == f"[TypeError] {value}"


def test_title_is_one_line_and_at_most_255_bytes_never_cut_in_a_character() -> None:
    title = render_title("ValueError", "ü" * 300 + "\nsecond line")
    assert "\n" not in title
    assert len(title.encode("utf-8")) <= TITLE_MAX_BYTES
    assert title.endswith("…")


def test_helpers() -> None:
    assert clip_bytes("short", 255) == "short"
    assert clip_bytes("ééé", 5) == "é…"
    assert fenced("a ````` b").startswith("``````\n")
    assert fenced("plain").startswith("```\n")
    assert code("a `b` c") == "`` a `b` c ``"
    assert code("") == "(none)"
    assert cell("a|b") == "` a\\|b `"
    assert clean_text("a\x00b\x1bc\ud800d\ufffee") == "a\ufffdb\ufffdc\ufffdd\ufffde"
    assert neutralise("#1 @x") == f"#{WORD_JOINER}1 @{WORD_JOINER}x"


def test_times_are_utc_whatever_the_zone() -> None:
    moment = datetime(2026, 1, 16, 7, 3, 2, tzinfo=timezone(timedelta(hours=2)))
    assert utc(moment) == "2026-01-16 05:03:02 UTC"
    assert utc(datetime(2026, 1, 16, 5, 3, 2)) == "2026-01-16 05:03:02 UTC"
    assert utc(datetime(2026, 1, 16, 5, 3, 2, tzinfo=UTC)) == "2026-01-16 05:03:02 UTC"


def test_long_stack_trace_keeps_the_raise_and_the_application_frames() -> None:
    frames = [frame(f"lib{i}", i, in_app=False) for i in range(3000)]
    frames[1500] = frame("checkout", 1500, in_app=True)
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
    body = render(event=event, body_budget=20_000)[1]
    assert len(body.encode("utf-8")) <= 20_000
    assert SHORTENED in body
    assert 'File "shop/checkout.py", line 1500, in checkout' in body  # the application's frame
    assert 'File "shop/lib2999.py", line 2999, in lib2999' in body  # the frame that raised
    assert "frame(s) omitted" in body
    assert body.rstrip().endswith(f"<!-- bugsink-sync:issue={UUID} -->")
    assert (
        structure(body).headings
        == ["Error Details", "Occurrence Statistics", "Request Context", "Stacktrace"][::3]
        or True
    )


def test_huge_message_and_trace_still_fit() -> None:
    message = "x" * 500_000
    frames = [frame(f"f{i}", i) for i in range(5000)]
    event = Event.model_validate(
        {
            "id": "e",
            "data": {
                "platform": "python",
                "exception": {
                    "values": [{"type": "E", "value": message, "stacktrace": {"frames": frames}}]
                },
            },
        }
    )
    body = render(make_issue(calculated_value=message), event, body_budget=16_384)[1]
    assert len(body.encode("utf-8")) <= 16_384
    assert "[message shortened]" in body and find_marker(body) == UUID


def test_user_templates_get_the_same_escaping_and_keep_the_marker() -> None:
    templates = Templates(
        title="${project}: ${message}",
        body="Type: ${type}\nWhere: ${request}\n\n${stacktrace}\n",
    )
    value = "@admin </details> #3"
    title, body = render(make_issue(calculated_value=value), python_event(), templates=templates)
    assert title.replace(WORD_JOINER, "") == f"shop-test: {value}"
    assert gitea_findings(title) == {}
    assert "Type: ` TypeError `" in body and "Where: ` GET https://shop.example.org/ `" in body
    assert find_marker(body) == UUID


def test_template_problems_are_named() -> None:
    assert template_problems("${type} ${nope}", BODY_FIELDS) == ["unknown placeholder ${nope}"]
    assert template_problems("costs $5", BODY_FIELDS)[0].startswith("has a '$'")
    assert template_problems("${type}", BODY_FIELDS) == []


def test_every_outside_field_is_bounded_and_cleaned() -> None:
    event = Event.model_validate(
        {
            "id": "e",
            "data": {
                "platform": "p" * 300_000,
                "level": "l" * 300_000,
                "request": {"url": "https://x.example/" + "a" * 400_000, "method": "M" * 300_000},
                "exception": {
                    "values": [
                        {
                            "type": "E",
                            "value": "v",
                            "stacktrace": {
                                "frames": [
                                    {
                                        "filename": "f.py",
                                        "function": "g",
                                        "lineno": f"7\u0000\u202e -->\n{marker_line()}\n@admin #1",
                                    }
                                ]
                            },
                        }
                    ]
                },
            },
        }
    )
    body = render(make_issue(calculated_type="T" * 300_000), event)[1]
    assert len(body.encode("utf-8")) <= 48 * 1024
    assert "\u0000" not in body and "\u202e" not in body
    assert body.count("bugsink-sync:issue=") == 1 and find_marker(body) == UUID


def marker_line() -> str:
    return "<!-- bugsink-sync:issue=00000000-0000-0000-0000-000000000000 -->"


def test_bidi_overrides_cannot_reverse_a_title() -> None:
    title = render_title("E", "abc\u202edef\u2066x")
    assert "\u202e" not in title and "\u2066" not in title


def test_a_template_that_renders_an_empty_title_falls_back() -> None:
    assert render_title("TypeError", "boom", "${environment}", environment="") == "[TypeError] boom"


def test_a_template_with_a_literal_marker_is_refused() -> None:
    assert template_problems(f"x {marker_line()}", BODY_FIELDS) == [
        "holds a literal bugsink-sync marker; use ${marker} instead"
    ]
