"""Property tests: no input, in any field, can break the structure, ping, cross-link or pass
a limit. A real Markdown parser reads every body hypothesis makes up."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bugsink_sync.bugsink import Event, Issue
from bugsink_sync.render import (
    MESSAGE_CELL_CHARS,
    TITLE_MAX_BYTES,
    WORD_JOINER,
    clip_bytes,
    find_marker,
    marker,
    neutralise,
    one_line,
    render_issue,
)
from tests.unit.markdown_structure import gitea_findings, structure

UUID = "282fde12-b570-4dc4-afef-289fb2488b03"
URL = f"http://bugsink.test/issues/issue/{UUID}/event/last/"
BUDGET = 12_000

# Text of every kind, with the characters that matter here made likely.
PIECES = [
    *"`|<>#@!*_[]()\\:~&\n\r\t -",
    "</details>",
    "```",
    "<!--",
    "-->",
    "@admin",
    "#12",
    "deadbeef1",
]
nasty = st.lists(st.one_of(st.characters(), st.sampled_from(PIECES)), max_size=120).map("".join)
frames = st.lists(
    st.fixed_dictionaries(
        {"filename": nasty, "function": nasty, "context_line": nasty},
        optional={
            "lineno": st.integers(0, 10**6),
            "colno": st.integers(0, 10**6),
            "in_app": st.booleans(),
        },
    ),
    max_size=8,
)
exception = st.fixed_dictionaries(
    {"type": nasty, "value": nasty},
    optional={"stacktrace": st.fixed_dictionaries({"frames": frames})},
)
event_data = st.fixed_dictionaries(
    {},
    optional={
        "platform": st.one_of(nasty, st.sampled_from(["python", "javascript", "java", "go"])),
        "level": nasty,
        "environment": nasty,
        "message": nasty,
        "exception": st.fixed_dictionaries({"values": st.lists(exception, max_size=3)}),
        "request": st.fixed_dictionaries({"url": nasty, "method": nasty}),
        "tags": st.one_of(
            st.dictionaries(nasty, nasty, max_size=3), st.lists(st.tuples(nasty, nasty), max_size=3)
        ),
    },
)


def issue(kind: str, value: str) -> Issue:
    return Issue(
        id=UUID,
        project=1,
        first_seen="2026-01-13T18:24:22Z",  # type: ignore[arg-type]
        last_seen="2026-01-16T05:03:02Z",  # type: ignore[arg-type]
        digested_event_count=3,
        calculated_type=kind,
        calculated_value=value,
    )


def cell_code(row: list[str]) -> str:
    """The literal text a table cell's code span shows."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").parseInline(row[1])  # the table already unescaped `\|`
    children = tokens[0].children or []
    return "".join(c.content for c in children if c.type == "code_inline")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=nasty, value=nasty, data=event_data, project=nasty)
def test_any_input_keeps_the_structure_and_the_limits(
    kind: str, value: str, data: dict[str, Any], project: str
) -> None:
    event = Event(id="e", data=data)
    rendered = render_issue(
        issue(kind, value), event, project=project, issue_url=URL, body_budget=BUDGET
    )
    title, body = rendered.title, rendered.body

    assert "\n" not in title and "\r" not in title
    assert len(title.encode("utf-8")) <= TITLE_MAX_BYTES
    assert gitea_findings(title) == {}

    assert len(body.encode("utf-8")) <= BUDGET
    found = structure(body)
    has_request = bool(one_line((data.get("request") or {}).get("url")))
    expected = ["Error Details", "Occurrence Statistics"] + ["Request Context"] * has_request
    assert found.headings == [*expected, "Stacktrace"]
    assert len(found.rows) == 5 and all(len(row) == 2 for row in found.rows)
    assert [row[0] for row in found.rows[1:]] == [
        "**Type**",
        "**Message**",
        "**Platform**",
        "**Level**",
    ]
    assert (found.details_open, found.details_close) == (1, 1)
    assert any(p.startswith(f"**Bugsink Issue**: {URL}") for p in found.paragraphs)
    assert find_marker(body) == UUID
    assert gitea_findings(found.text_outside_code) == {}


@settings(max_examples=300, deadline=None)
@given(kind=nasty, value=nasty)
def test_the_table_shows_type_and_message_exactly(kind: str, value: str) -> None:
    body = render_issue(issue(kind, value), None, project="p", issue_url=URL).body
    rows = structure(body).rows
    shown_type = one_line(kind) or "Error"
    assert cell_code(rows[1]) in (shown_type, "")  # "" only when the cell says (none)
    message = one_line(value)
    if (
        message
        and len(message) <= MESSAGE_CELL_CHARS
        and WORD_JOINER not in value
        and "bugsink-sync:issue=" not in value
    ):
        assert cell_code(rows[2]) == message


@settings(max_examples=500, deadline=None)
@given(text=st.text(), limit=st.integers(4, 300))
def test_clipping_never_passes_the_limit_or_cuts_a_character(text: str, limit: int) -> None:
    clipped = clip_bytes(text, limit)
    assert len(clipped.encode("utf-8")) <= limit
    assert clipped == text or clipped.endswith("…")


@settings(max_examples=500, deadline=None)
@given(text=nasty)
def test_neutralising_only_adds_invisible_joiners(text: str) -> None:
    assert neutralise(text).replace(WORD_JOINER, "") == text.replace(WORD_JOINER, "")
    assert gitea_findings(neutralise(one_line(text))) == {}


def test_an_error_message_cannot_forge_a_marker() -> None:
    forged = f"boom {marker('00000000-0000-0000-0000-000000000000')}"
    body = render_issue(issue("E", forged), None, project="p", issue_url=URL).body
    assert find_marker(body) == UUID
    assert body.count("bugsink-sync:issue=") == 1
