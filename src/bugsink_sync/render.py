"""Turn a Bugsink issue and its newest event into a Gitea issue title and body.

Pure functions over data. Every value taken from an event is text someone else wrote
(user input, HTML, Markdown, any script), so it is shown literally and safely:

- in the body it always sits inside code: an inline code span (table cells, list items) or
  a fenced block (full message, stack trace), with delimiters longer than any backtick run
  inside. Gitea neither renders nor scans code for mentions, issue references, commit
  hashes, emoji or links, so nothing in it can ping, cross-link or break the structure;
- the title is plain text that Gitea scans for `#12`, `owner/repo#3`, `@user`, hashes,
  `:emoji:` and its own URLs: an invisible WORD JOINER (U+2060) is put inside each such form;
- control characters and invalid code points become U+FFFD; the title stays on one line
  within 255 bytes; the body stays within a byte budget by shortening the stack trace
  (keeping the frame that raised and the application's frames) and, if need be, the message.

A hidden marker carries the Bugsink issue UUID, so the mapping can be rebuilt from Gitea.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bugsink_sync.bugsink.models import Event, Issue

TITLE_MAX_BYTES = 255  # Gitea cuts longer titles itself, sometimes inside a character
DEFAULT_BODY_BUDGET = 48 * 1024  # bytes; well under MySQL TEXT's 64 KiB
MESSAGE_CELL_CHARS = 300
WORD_JOINER = "\u2060"
_MARKER_KEY = "bugsink-sync:issue="
MARKER_PREFIX = "<!-- " + _MARKER_KEY
_MARKER_RE = re.compile(r"<!-- bugsink-sync:issue=([0-9a-fA-F-]{8,64}) -->")
NO_STACKTRACE = "No stack trace was recorded for this event."
SHORTENED = "[stack trace shortened to fit the issue: the full one is in Bugsink, linked below]"

DEFAULT_TITLE_TEMPLATE = "[${type}] ${message}"
DEFAULT_BODY_TEMPLATE = """\
## Error Details

| Field        | Value                   |
| ------------ | ----------------------- |
| **Type** | ${type} |
| **Message** | ${message} |
| **Platform** | ${platform} |
| **Level** | ${level} |
${full_message_section}
## Occurrence Statistics

- **First Seen**: ${first_seen}
- **Last Seen**: ${last_seen}
- **Total Occurrences**: ${occurrences}
${request_section}
## Stacktrace

<details>
<summary>Click to expand</summary>

${stacktrace}

</details>

---

**Bugsink Issue**: ${bugsink_url}
**Project**: ${project}

${marker}
"""
TITLE_FIELDS = frozenset({"type", "message", "project", "level", "platform", "environment"})
BODY_FIELDS = TITLE_FIELDS | {
    "full_message",
    "full_message_section",
    "first_seen",
    "last_seen",
    "occurrences",
    "request",
    "request_section",
    "stacktrace",
    "bugsink_url",
    "bugsink_id",
    "marker",
    "release",
}


@dataclass(frozen=True)
class RenderedIssue:
    """What is sent to Gitea."""

    title: str
    body: str


@dataclass(frozen=True)
class Templates:
    """Title and body templates (`string.Template`, `${name}` placeholders). Every value put
    in is already made safe for where the built-in template puts it (see BODY_FIELDS)."""

    title: str = DEFAULT_TITLE_TEMPLATE
    body: str = DEFAULT_BODY_TEMPLATE


def template_problems(text: str, allowed: frozenset[str]) -> list[str]:
    """What is wrong with a user's template: unknown names, or a stray `$`."""
    template = string.Template(text)
    if not template.is_valid():
        return ["has a '$' that is not a ${name} placeholder (write $$ for a dollar sign)"]
    unknown = sorted(set(template.get_identifiers()) - allowed)
    problems = [f"unknown placeholder ${{{name}}}" for name in unknown]
    if _MARKER_KEY in text:
        problems.append("holds a literal bugsink-sync marker; use ${marker} instead")
    return problems


# --- text hygiene -------------------------------------------------------------------------


_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _bad_code_point(ch: str) -> bool:
    if ch in "\n\t":
        return False
    code = ord(ch)
    if 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE:
        return True  # noncharacters
    if ch in _BIDI_CONTROLS:
        return True  # embeddings, overrides and isolates can make text display reversed
    return unicodedata.category(ch) in {"Cc", "Cs"}


def clean_text(value: object) -> str:
    """Any value as text: control characters and invalid code points become U+FFFD."""
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    # No outside text may carry a marker of ours: it could tie a Gitea issue to another error.
    text = text.replace(_MARKER_KEY, _MARKER_KEY[:-1] + WORD_JOINER + "=")
    return "".join("\ufffd" if _bad_code_point(ch) else ch for ch in text)


def one_line(value: object) -> str:
    """Text on a single line, runs of white space folded to one space."""
    return " ".join(clean_text(value).split())


def _delimiter(text: str, char: str, minimum: int) -> str:
    longest = max((len(run) for run in re.findall(f"{re.escape(char)}+", text)), default=0)
    return char * max(minimum, longest + 1)


def code(value: object) -> str:
    """An inline code span showing `value` literally on one line (`(none)` when empty)."""
    text = one_line(value)
    if not text:
        return "(none)"
    ticks = _delimiter(text, "`", 1)
    return f"{ticks} {text} {ticks}"  # the spaces are stripped again by the parser


def cell(value: object) -> str:
    """A code span for a table cell: `|` is escaped, the one thing a table parses first."""
    return code(value).replace("|", "\\|")


def fenced(text: str) -> str:
    """A code block whose fence is longer than any backtick run inside it."""
    fence = _delimiter(text, "`", 3)
    return f"{fence}\n{text}\n{fence}"


def clip_bytes(text: str, limit: int, ellipsis: str = "…") -> str:
    """At most `limit` bytes of UTF-8, never cut inside a character, `…` when cut."""
    if len(text.encode("utf-8")) <= limit:
        return text
    room = max(0, limit - len(ellipsis.encode("utf-8")))
    clipped = text.encode("utf-8")[:room].decode("utf-8", "ignore")
    return clipped.rstrip() + ellipsis


# Forms Gitea turns into links or notifications in plain text (modules/references and
# modules/markup): a word joiner inside each keeps the text and breaks the pattern.
_TITLE_FORMS = [
    re.compile(r"([@#!])(?=[-\w])"),  # @user, @org/team, repo@sha, #12, !12, repo#3, @1h
    re.compile(r"\b([A-Z]{1,10}-)(?=[1-9])"),  # ABC-123 (external trackers)
    re.compile(r"\b([0-9a-f]{6})(?=[0-9a-f]+\b)"),  # bare commit hashes (7+ hex)
    re.compile(r"(:)(?=[\w+-]+:)"),  # :emoji:
    re.compile(r"(://)"),  # full URLs (Gitea's own issue URLs are references)
]


def neutralise(text: str) -> str:
    """Plain text in which Gitea finds no mention, reference, hash, emoji or link."""
    for form in _TITLE_FORMS:
        text = form.sub(lambda m: m.group(1) + WORD_JOINER, text)
    return text


def _plain_safe(text: str) -> bool:
    """A slug Gitea shows as it is after `**Project**: `: simple characters, and not starting
    like a commit hash or an external-tracker reference (those need a space before them)."""
    simple = re.fullmatch(r"[A-Za-z0-9_.-]+", text)
    return bool(simple) and not re.match(r"[0-9a-f]{7}|[A-Z]{1,10}-[1-9]", text)


def utc(moment: datetime | None) -> str:
    """`2026-01-16 05:03:02 UTC`, whatever the host's zone."""
    if moment is None:
        return "unknown"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# --- reading the event ----------------------------------------------------------------------


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


def request_line(data: Mapping[str, Any]) -> str | None:
    """`GET https://…` when the event has a request with a URL (at most 2,000 characters)."""
    request = _dict(data.get("request"))
    url = one_line(request.get("url"))
    if not url:
        return None
    url = url if len(url) <= 2000 else url[:1999] + "…"
    method = one_line(request.get("method")).upper()[:20]
    return f"{method} {url}" if method else url


# --- stack traces -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """One frame as text: where, and the source line when the SDK sent it."""

    where: str
    context: str
    in_app: bool


@dataclass(frozen=True)
class Trace:
    """One exception of the chain: its frames (oldest first) and its `Type: value` line."""

    frames: tuple[Frame, ...]
    summary: str
    header: str = "Traceback (most recent call last):"


def _number(value: object) -> str | None:
    """A line or column number as text; anything else an SDK sent is shown cleaned, short."""
    if value is None:
        return None
    return str(value) if isinstance(value, int) else one_line(value)[:20] or None


def _frame(frame: Mapping[str, Any], platform: str) -> Frame:
    file = clean_text(frame.get("filename") or frame.get("abs_path") or "")
    module = clean_text(frame.get("module") or "")
    function = clean_text(frame.get("function") or "?")
    line = _number(frame.get("lineno"))
    column = _number(frame.get("colno"))
    number = "?" if line is None else line
    if platform == "python":
        where = f'File "{file or module or "?"}", line {number}, in {function}'
    elif platform == "java":
        qualified = f"{module}.{function}" if module else function
        where = f"at {qualified}({file or '?'}:{number})"
    else:
        position = ":".join(str(p) for p in (line, column) if p is not None)
        where = f"at {function} ({file or module or '?'}{':' + position if position else ''})"
    return Frame(where, one_line(frame.get("context_line")), frame.get("in_app") is True)


def traces(data: Mapping[str, Any]) -> list[Trace]:
    """The traces of an event: one per exception of the chain, else the threads' stacks."""
    platform = clean_text(data.get("platform")).lower()
    found = []
    for exc in exceptions(data):
        frames = _values(_dict(exc.get("stacktrace")).get("frames"))
        value = clean_text(exc.get("value"))
        summary = (clean_text(exc.get("type")) or "Error") + (f": {value}" if value else "")
        found.append(Trace(tuple(_frame(f, platform) for f in frames), summary))
    if found:
        return found
    for thread in _values(data.get("threads")):
        frames = _values(_dict(thread.get("stacktrace")).get("frames"))
        if frames:
            name = one_line(thread.get("name") or thread.get("id") or "thread")
            found.append(Trace(tuple(_frame(f, platform) for f in frames), "", f"Stack of {name}:"))
    return found


@dataclass(frozen=True)
class TraceStyle:
    """How much of a trace to show; each step down the list is shorter."""

    all_frames: bool = True
    context: bool = True
    last: int | None = None


TRACE_STYLES = (
    TraceStyle(),
    TraceStyle(all_frames=False),
    TraceStyle(all_frames=False, context=False),
    TraceStyle(all_frames=False, context=False, last=20),
    TraceStyle(all_frames=False, context=False, last=3),
)


def _kept(frames: Sequence[Frame], style: TraceStyle) -> list[Frame | int]:
    """Frames to show, with counts standing for runs of omitted ones. The last frame (the
    one that raised) is always kept; without `all_frames`, so are the application's."""
    keep = [
        style.all_frames or frame.in_app or index == len(frames) - 1
        for index, frame in enumerate(frames)
    ]
    if style.last is not None:
        chosen = [i for i, wanted in enumerate(keep) if wanted][-style.last :]
        keep = [i in chosen for i in range(len(frames))]
    shown: list[Frame | int] = []
    for frame, wanted in zip(frames, keep, strict=True):
        if wanted:
            shown.append(frame)
        elif shown and isinstance(shown[-1], int):
            shown[-1] += 1
        else:
            shown.append(1)
    return shown


def trace_text(found: Sequence[Trace], style: TraceStyle = TraceStyle()) -> str:
    """Tracebacks as Python prints them (cause first), in the chosen style."""
    blocks = []
    for trace in found:
        lines = [trace.header] if trace.frames else []
        for item in _kept(trace.frames, style):
            if isinstance(item, int):
                lines.append(f"  ... {item} frame(s) omitted ...")
                continue
            lines.append(f"  {item.where}")
            if style.context and item.context:
                lines.append(f"    {item.context}")
        if trace.summary:
            lines.append(trace.summary)
        blocks.append("\n".join(lines))
    separator = "\n\nDuring handling of the above exception, another exception occurred:\n\n"
    return separator.join(blocks)


def _fallback(stacktrace_md: str) -> str:
    text = clean_text(stacktrace_md).strip()
    return "" if text in ("", "_No stacktrace available._") else text


# --- the issue ----------------------------------------------------------------------------------


def marker(issue_uuid: str) -> str:
    """The hidden line that ties a Gitea issue to its Bugsink issue."""
    return f"{MARKER_PREFIX}{issue_uuid} -->"


def find_marker(body: str) -> str | None:
    """The Bugsink issue UUID of a body written by this program, if any (the last marker:
    the built-in template ends with it)."""
    matches = _MARKER_RE.findall(body or "")
    return str(matches[-1]) if matches else None


def render_title(
    kind: str, message: str, template: str = DEFAULT_TITLE_TEMPLATE, **extra: str
) -> str:
    """`[Type] message` on one line, neutralised, at most 255 bytes."""
    first_line = next((line for line in clean_text(message).splitlines() if line.strip()), "")
    values = {"type": one_line(kind), "message": one_line(first_line)}
    values |= {name: one_line(value) for name, value in extra.items()}
    text = one_line(string.Template(template).safe_substitute(values))
    if not text.strip("[]() -:"):  # a user's template that renders empty: Gitea needs a title
        text = one_line(string.Template(DEFAULT_TITLE_TEMPLATE).safe_substitute(values))
    return clip_bytes(neutralise(text), TITLE_MAX_BYTES)


@dataclass(frozen=True)
class _Parts:
    """The event's facts, already made safe for where the template puts them."""

    values: dict[str, str] = field(default_factory=dict)
    message: str = ""
    traces: tuple[Trace, ...] = ()
    fallback_trace: str = ""


def _short(message: str) -> str:
    """The message as the table shows it: one line, at most MESSAGE_CELL_CHARS characters."""
    shown = one_line(message)
    return shown if len(shown) <= MESSAGE_CELL_CHARS else shown[: MESSAGE_CELL_CHARS - 1] + "…"


def _clip(value: object, chars: int) -> str:
    """One line of at most `chars` characters (`…` when cut): fields that are short by
    nature but arrive from outside, so the body's budget holds whatever they hold."""
    text = one_line(value)
    return text if len(text) <= chars else text[: chars - 1] + "…"


def _message_section(message: str) -> str:
    """The whole message in a code block, when the table cannot show all of it as it is."""
    if _short(message) == message.strip():
        return ""
    return f"\n**Full message**:\n\n{fenced(message.strip())}\n"


def _parts(issue: Issue, event: Event | None, project: str, issue_url: str) -> _Parts:
    data: Mapping[str, Any] = event.data if event is not None else {}
    kind, message = error_type_and_message(issue, data)
    request = request_line(data)
    values = {
        "type": cell(_clip(kind, MESSAGE_CELL_CHARS)),
        "message": cell(_short(message)),
        "platform": cell(_clip(data.get("platform") or "unknown", 100)),
        "level": cell(_clip(data.get("level") or "error", 100)),
        "environment": code(_clip(data.get("environment") or "", 200)),
        "release": code(_clip(data.get("release") or "", 200)),
        "first_seen": utc(issue.first_seen),
        "last_seen": utc(issue.last_seen),
        "occurrences": str(issue.digested_event_count),
        "request": code(request) if request else "(none)",
        "request_section": f"\n## Request Context\n\n- **URL**: {code(request)}\n"
        if request
        else "",
        "bugsink_url": issue_url,
        "bugsink_id": issue.id,
        "project": project if _plain_safe(project) else code(project),
        "marker": marker(issue.id),
    }
    return _Parts(
        values,
        clean_text(message),
        tuple(traces(data)),
        _fallback(event.stacktrace_md) if event is not None else "",
    )


def _body(parts: _Parts, template: str, message: str, trace: str) -> str:
    values = dict(parts.values)
    values["full_message"] = fenced(message.strip()) if message.strip() else "(none)"
    values["full_message_section"] = _message_section(message)
    values["stacktrace"] = fenced(trace) if trace else NO_STACKTRACE
    body = string.Template(template).safe_substitute(values)
    if MARKER_PREFIX not in body:  # a user's template without ${marker}: keep the mapping
        body = body.rstrip("\n") + "\n\n" + values["marker"] + "\n"
    return body


def _fits(text: str, budget: int) -> bool:
    return len(text.encode("utf-8")) <= budget


def _trace(parts: _Parts, style: TraceStyle, shortened: bool) -> str:
    text = trace_text(parts.traces, style) if parts.traces else parts.fallback_trace
    return f"{SHORTENED}\n\n{text}" if shortened and text else text


def render_body(parts: _Parts, template: str, budget: int) -> str:
    """The body within `budget` bytes: shorter trace styles first, then also a shortened
    message, and at last only the end of the trace (where it raised)."""
    short_message = clip_bytes(parts.message, max(256, budget // 8), "… [message shortened]")
    for message in dict.fromkeys([parts.message, short_message]):
        for index, style in enumerate(TRACE_STYLES if parts.traces else TRACE_STYLES[:1]):
            body = _body(parts, template, message, _trace(parts, style, shortened=index > 0))
            if _fits(body, budget):
                return body
    skeleton = _body(parts, template, short_message, SHORTENED)
    room = budget - len(skeleton.encode("utf-8")) - 32  # fence and blank lines
    tail = _trace(parts, TRACE_STYLES[-1], shortened=False).encode("utf-8")
    kept = tail[len(tail) - max(0, room) :].decode("utf-8", "ignore") if room > 0 else ""
    return _body(parts, template, short_message, f"{SHORTENED}\n\n{kept}".rstrip())


def render_issue(
    issue: Issue,
    event: Event | None,
    *,
    project: str,
    issue_url: str,
    body_budget: int = DEFAULT_BODY_BUDGET,
    templates: Templates = Templates(),
) -> RenderedIssue:
    """The Gitea issue for a Bugsink issue, in the seed's template (or the user's)."""
    data: Mapping[str, Any] = event.data if event is not None else {}
    kind, message = error_type_and_message(issue, data)
    extra = {
        "project": project,
        "level": one_line(data.get("level") or "error"),
        "platform": one_line(data.get("platform") or "unknown"),
        "environment": one_line(data.get("environment") or ""),
    }
    title = render_title(kind, message, templates.title, **extra)
    body = render_body(_parts(issue, event, project, issue_url), templates.body, body_budget)
    return RenderedIssue(title=title, body=body)
