"""What a real Markdown parser (markdown-it, CommonMark + GFM tables, as Gitea's goldmark)
finds in a rendered body, and what Gitea would scan for mentions and references."""

from __future__ import annotations

import re
from dataclasses import dataclass

from markdown_it import MarkdownIt
from markdown_it.token import Token

_PARSER = MarkdownIt("commonmark").enable("table")

# Gitea's own patterns (modules/references, modules/markup), with Go's ASCII \w.
W = r"[0-9A-Za-z_]"
GITEA_PATTERNS = {
    "mention": re.compile(
        rf"(?:\s|^|\(|\[)(@[-{W[1:-1]}][-.{W[1:-1]}]*)(?:\s|$|[:,;.?!](?:\s|$)|'|\)|\])"
    ),
    "issue": re.compile(r"(?:\s|^|\(|\[|'|\")([#!][0-9]+)(?:\s|$|\)|\]|'|\"|[:;,.?!]\s|[:;,.?!]$)"),
    "cross_issue": re.compile(
        r"(?:\s|^|\(|\[)([0-9a-zA-Z-_.]+/[0-9a-zA-Z-_.]+[#!][0-9]+)(?:\s|$|\)|\]|[:;,.?!]\s|[:;,.?!]$)"
    ),
    "cross_commit": re.compile(
        r"(?:\s|^|\(|\[)([0-9a-zA-Z-_.]+)/([0-9a-zA-Z-_.]+)@([0-9a-f]{7,64})(?:\s|$|\)|\]|[:;,.?!]\s|[:;,.?!]$)"
    ),
    "commit": re.compile(r"(?:\s|^|\(|\[)([0-9a-f]{7,64})(?:\s|$|\)|\]|[.,:](?:\s|$))"),
    "emoji": re.compile(r":[\w+-]*[A-Za-z][\w+-]*:"),  # shortcodes are names, not times
}


def gitea_findings(text: str) -> dict[str, list[str]]:
    """Which mention/reference forms Gitea would find in plain text."""
    found = {name: [m.group(0) for m in p.finditer(text)] for name, p in GITEA_PATTERNS.items()}
    return {name: hits for name, hits in found.items() if hits}


@dataclass
class Structure:
    headings: list[str]
    rows: list[list[str]]
    details_open: int
    details_close: int
    fences: list[str]
    text_outside_code: str
    paragraphs: list[str]


def _cells(tokens: list[Token]) -> list[list[str]]:
    rows: list[list[str]] = []
    for token in tokens:
        if token.type == "tr_open":
            rows.append([])
        elif token.type == "inline" and rows and token.level >= 4:
            rows[-1].append(token.content)
    return rows


def _plain_text(tokens: list[Token]) -> str:
    """Text Gitea would scan: inline text outside code spans, fences and HTML."""
    parts = []
    for token in tokens:
        if token.type == "inline" and token.children:
            parts += [child.content for child in token.children if child.type == "text"]
    return "\n".join(parts)


def structure(body: str) -> Structure:
    tokens = _PARSER.parse(body)
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    html = [t.content for t in tokens if t.type == "html_block"]
    return Structure(
        headings=headings,
        rows=_cells(tokens),
        details_open=sum(h.count("<details>") for h in html),
        details_close=sum(h.count("</details>") for h in html),
        fences=[t.content for t in tokens if t.type == "fence"],
        text_outside_code=_plain_text(tokens),
        paragraphs=[t.content for t in tokens if t.type == "inline" and t.level == 1],
    )
