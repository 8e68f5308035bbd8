"""Turn a Bugsink issue and its newest event into a Gitea issue title and body.

Pure functions over data. The body follows the seed's template; every value taken from an
event is text someone else wrote, so it is escaped to show as written and never as
Markdown or HTML, and a hidden marker carries the Bugsink issue UUID so that the mapping
can be rebuilt from Gitea alone.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bugsink_sync.bugsink.models import Event, Issue

TITLE_MAX_BYTES = 255  # Gitea cuts longer titles itself, sometimes inside a character
DEFAULT_BODY_BUDGET = 48 * 1024  # bytes; well under MySQL TEXT's 64 KiB
MESSAGE_CELL_CHARS = 300
MARKER_PREFIX = "<!-- bugsink-sync:issue="
_MARKER_RE = re.compile(r"<!-- bugsink-sync:issue=([0-9a-fA-F-]{8,64}) -->")
_NO_STACKTRACE = "No stack trace was recorded for this event."


@dataclass(frozen=True)
class RenderedIssue:
    """What is sent to Gitea."""

    title: str
    body: str


# --- text hygiene -------------------------------------------------------------------


def clean_text(value: object) -> str:
    """Any value as text: control characters and invalid code points become U+FFFD."""
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    text = text.encode("utf-8", "replace").decode("utf-8", "replace")
    return "".join(
        ch if ch in "\n\t" or unicodedata.category(ch) not in {"Cc", "Cs", "Co"} else "\ufffd"
        for ch in text.replace("\r\n", "\n").replace("\r", "\n")
    )


def one_line(value: object) -> str:
    """Text on a single line, runs of white space folded to one space."""
    return " ".join(clean_text(value).split())


# Characters that start inline Markdown or HTML mid-line. Values never begin a line (they
# follow `| ` or `**Field**: `), so block markers such as `#`, `-` and `+` need no escape.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&])")


def inline(value: object) -> str:
    """Text for a table cell or list item, shown literally: one line, Markdown/HTML escaped."""
    return _MD_SPECIAL.sub(r"\\\1", one_line(value))


def fenced(text: str, info: str = "") -> str:
    """A code block whose fence is longer than any backtick run inside it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}"


def clip_bytes(text: str, limit: int, ellipsis: str = "…") -> str:
    """At most `limit` bytes of UTF-8, never cut inside a character, `…` when cut."""
    if len(text.encode("utf-8")) <= limit:
        return text
    room = limit - len(ellipsis.encode("utf-8"))
    clipped = text.encode("utf-8")[:room].decode("utf-8", "ignore")
    return clipped.rstrip() + ellipsis


def utc(moment: datetime | None) -> str:
    """`2026-01-16 05:03:02 UTC`, whatever the host's zone."""
    if moment is None:
        return "unknown"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# --- reading the event ----------------------------------------------------------------


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _values(container: Any) -> list[dict[str, Any]]:
    """`{"values": [...]}` or a bare list, as Sentry SDKs send either."""
    items = container.get("values") if isinstance(container, dict) else container
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def exceptions(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The exception chain, cause first; the last one is the one that was raised."""
    return _values(data.get("exception"))


def event_message(data: Mapping[str, Any]) -> str:
    """The text of a message or log event."""
    logentry = _dict(data.get("logentry"))
    message = data.get("message")
    if isinstance(message, dict):  # older SDKs nest it like logentry
        logentry = logentry or message
        message = None
    return clean_text(logentry.get("formatted") or message or logentry.get("message") or "")


def error_type_and_message(issue: Issue, data: Mapping[str, Any]) -> tuple[str, str]:
    """Type and message: Bugsink's own calculation first, the raw event as fallback."""
    chain = exceptions(data)
    raised = chain[-1] if chain else {}
    kind = issue.calculated_type or clean_text(raised.get("type")) or "Error"
    message = issue.calculated_value or clean_text(raised.get("value")) or event_message(data)
    return clean_text(kind), clean_text(message)


def _frame_line(frame: Mapping[str, Any], platform: str) -> list[str]:
    where = clean_text(frame.get("filename") or frame.get("abs_path") or frame.get("module") or "?")
    function = clean_text(frame.get("function") or "?")
    line = frame.get("lineno")
    if platform == "python":
        lines = [f'  File "{where}", line {line if line is not None else "?"}, in {function}']
    else:
        column = frame.get("colno")
        position = ":".join(str(p) for p in (line, column) if p is not None)
        lines = [f"  at {function} ({where}{':' + position if position else ''})"]
    context = one_line(frame.get("context_line"))
    if context:
        lines.append(f"    {context}")
    return lines


def stacktrace_text(data: Mapping[str, Any], fallback_md: str = "") -> str:
    """A traceback in the event's own order (oldest frame first, cause before effect)."""
    platform = clean_text(data.get("platform")).lower()
    blocks: list[str] = []
    for exc in exceptions(data):
        frames = _values(_dict(exc.get("stacktrace")).get("frames"))
        lines = ["Traceback (most recent call last):"] if frames else []
        for frame in frames:
            lines.extend(_frame_line(frame, platform))
        value = clean_text(exc.get("value"))
        lines.append(f"{clean_text(exc.get('type')) or 'Error'}{': ' + value if value else ''}")
        blocks.append("\n".join(lines))
    if not blocks:
        for thread in _values(data.get("threads")):
            frames = _values(_dict(thread.get("stacktrace")).get("frames"))
            if frames:
                blocks.append(
                    "\n".join(line for frame in frames for line in _frame_line(frame, platform))
                )
    if blocks:
        separator = "\n\nDuring handling of the above exception, another exception occurred:\n\n"
        return separator.join(blocks)
    fallback = clean_text(fallback_md).strip()
    return "" if fallback in ("", "_No stacktrace available._") else fallback


def request_line(data: Mapping[str, Any]) -> str | None:
    """`GET https://…` when the event has a request with a URL."""
    request = _dict(data.get("request"))
    url = one_line(request.get("url"))
    if not url:
        return None
    method = one_line(request.get("method")).upper()
    return f"{method} {url}" if method else url


# --- the issue --------------------------------------------------------------------------


def render_title(kind: str, message: str) -> str:
    """`[Type] message` on one line, at most 255 bytes."""
    first_line = next((line for line in clean_text(message).splitlines() if line.strip()), "")
    text = f"[{one_line(kind)}] {one_line(first_line)}".strip()
    return clip_bytes(text, TITLE_MAX_BYTES)


def marker(issue_uuid: str) -> str:
    """The hidden line that ties a Gitea issue to its Bugsink issue."""
    return f"{MARKER_PREFIX}{issue_uuid} -->"


def find_marker(body: str) -> str | None:
    """The Bugsink issue UUID of a body written by this program, if any."""
    match = _MARKER_RE.search(body or "")
    return match.group(1) if match else None


def _table(rows: Iterable[tuple[str, str]]) -> list[str]:
    return [
        "| Field        | Value                   |",
        "| ------------ | ----------------------- |",
        *(f"| **{name}** | {value} |" for name, value in rows),
    ]


def _error_details(kind: str, message: str, data: Mapping[str, Any]) -> list[str]:
    shown = one_line(message)
    cell = shown if len(shown) <= MESSAGE_CELL_CHARS else shown[: MESSAGE_CELL_CHARS - 1] + "…"
    lines = [
        "## Error Details",
        "",
        *_table(
            [
                ("Type", inline(kind)),
                ("Message", inline(cell)),
                ("Platform", inline(data.get("platform") or "unknown")),
                ("Level", inline(data.get("level") or "error")),
            ]
        ),
    ]
    if cell != message.strip():  # long or multi-line: show all of it, literally
        lines += ["", "**Full message**:", "", fenced(message.strip())]
    return lines


def _occurrences(issue: Issue) -> list[str]:
    return [
        "## Occurrence Statistics",
        "",
        f"- **First Seen**: {utc(issue.first_seen)}",
        f"- **Last Seen**: {utc(issue.last_seen)}",
        f"- **Total Occurrences**: {issue.digested_event_count}",
    ]


def _stacktrace_section(trace: str) -> list[str]:
    content = fenced(trace) if trace else _NO_STACKTRACE
    return [
        "## Stacktrace",
        "",
        "<details>",
        "<summary>Click to expand</summary>",
        "",
        content,
        "",
        "</details>",
    ]


def _footer(issue: Issue, project: str, issue_url: str) -> list[str]:
    return [
        "---",
        "",
        f"**Bugsink Issue**: {issue_url}",
        f"**Project**: {inline(project)}",
        "",
        marker(issue.id),
    ]


def _assemble(sections: Sequence[list[str]]) -> str:
    return "\n\n".join("\n".join(section) for section in sections if section) + "\n"


def shorten_trace(trace: str, budget: int) -> str:
    """Keep the end of a traceback (where it raised) within `budget` bytes, saying so."""
    note = "[... stack trace shortened: the full one is in Bugsink, linked below ...]\n"
    room = budget - len(note.encode("utf-8"))
    if room <= 0:
        return note.strip()
    tail = trace.encode("utf-8")[-room:].decode("utf-8", "ignore")
    newline = tail.find("\n")
    return note + (tail[newline + 1 :] if 0 <= newline < len(tail) - 1 else tail)


def render_issue(
    issue: Issue,
    event: Event | None,
    *,
    project: str,
    issue_url: str,
    body_budget: int = DEFAULT_BODY_BUDGET,
) -> RenderedIssue:
    """The Gitea issue for a Bugsink issue, in the seed's template, within `body_budget`."""
    data: Mapping[str, Any] = event.data if event is not None else {}
    kind, message = error_type_and_message(issue, data)
    trace = stacktrace_text(data, event.stacktrace_md if event is not None else "")
    request = request_line(data)
    head = [
        _error_details(kind, message, data),
        _occurrences(issue),
        ["## Request Context", "", f"- **URL**: {inline(request)}"] if request else [],
    ]
    footer = _footer(issue, project, issue_url)
    body = _assemble([*head, _stacktrace_section(trace), footer])
    overflow = len(body.encode("utf-8")) - body_budget
    if overflow > 0 and trace:
        trace = shorten_trace(trace, max(0, len(trace.encode("utf-8")) - overflow - 16))
        body = _assemble([*head, _stacktrace_section(trace), footer])
    return RenderedIssue(title=render_title(kind, message), body=body)
