"""ASGI app that answers like Gitea 1.26.3 for the API subset in docs/gitea-api.md §3.

Why hand-rolled routing instead of FastAPI: Gitea's order of checks (auth → token scope →
repo lookup → token required → archived → body binding → permission) and its error shapes
(`{"message","url"}`, `[Field]: Required`, 500 for comments on a missing issue) are the
contract under test, and framework validation would answer differently.

Layout: JSON/errors → rendering of Gitea objects → request context and auth → Go-like body
binding → endpoint handlers → routing, faults and request log → control endpoints.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from .state import (
    ADMIN,
    READ,
    WRITE,
    Comment,
    GiteaState,
    InvalidColorError,
    Issue,
    Label,
    RecordedRequest,
    Repo,
    ServerConfig,
    Token,
    User,
    normalize_color,
    normalize_title,
)

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
JSON_TYPE = "application/json;charset=utf-8"
NO_BODY: Any = object()
QUERY_TOKEN_WARNING = (
    "token and access_token API authentication is deprecated and will be removed in gitea "
    "1.23. Please use AuthorizationHeaderToken instead. Existing queries will continue to "
    "work but without authorization."
)
ZERO_TIME = "0001-01-01T00:00:00Z"


# --- JSON and errors ------------------------------------------------------------------------


def go_json(value: Any) -> bytes:
    """Encode like Go's json.Encoder: HTML characters escaped, trailing newline."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for raw, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, escaped)
    return (text + "\n").encode("utf-8")


class ApiError(Exception):
    """An error answer; rendered in Gitea's shape by `Api.error_reply`."""

    def __init__(
        self,
        status: int,
        message: str = "",
        *,
        errors: list[str] | None = None,
        empty: bool = False,
    ) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.errors = errors
        self.empty = empty


@dataclass
class Reply:
    """What a handler answers: status, JSON payload (or NO_BODY) and extra headers."""

    status: int
    payload: Any = NO_BODY
    headers: dict[str, str] = field(default_factory=dict)


# --- rendering Gitea objects ----------------------------------------------------------------


def parse_offset(offset: str) -> timezone:
    """ServerConfig.utc_offset ("Z", "+02:00", "-05:30") as a tzinfo."""
    if offset in ("Z", "z", "UTC"):
        return UTC
    match = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", offset)
    if not match:
        raise ValueError(f"bad utc_offset {offset!r}")
    sign = -1 if match.group(1) == "-" else 1
    return timezone(sign * timedelta(hours=int(match.group(2)), minutes=int(match.group(3))))


class Renderer:
    """Turns model objects into the JSON Gitea sends, with every field the spec lists."""

    def __init__(self, state: GiteaState, root_url: str) -> None:
        self.state = state
        self.root = root_url
        self.api = root_url + "api/v1"
        self.tz = parse_offset(state.config.utc_offset)

    def ts(self, unix: int | None) -> str | None:
        """RFC 3339 in the server's zone, whole seconds; Go writes "Z" for UTC."""
        if unix is None:
            return None
        text = datetime.fromtimestamp(unix, self.tz).isoformat(timespec="seconds")
        return text[:-6] + "Z" if text.endswith("+00:00") else text

    def user(self, user: User, viewer: User | None = None) -> dict[str, Any]:
        """User (also used for org owners); e-mail and is_admin only real for self."""
        is_self = viewer is not None and viewer.id == user.id
        return {
            "id": user.id,
            "login": user.login,
            "login_name": "",
            "source_id": 0,
            "full_name": user.full_name,
            "email": user.email if is_self else f"{user.login}@noreply.localhost",
            "avatar_url": f"{self.root}avatars/{user.id}",
            "html_url": f"{self.root}{user.login}",
            "language": "",
            "is_admin": user.is_admin if is_self else False,
            "last_login": self.ts(user.created_unix),
            "created": self.ts(user.created_unix),
            "restricted": False,
            "active": True,
            "prohibit_login": False,
            "location": user.location,
            "website": user.website,
            "description": user.description,
            "visibility": "public",
            "followers_count": 0,
            "following_count": 0,
            "starred_repos_count": 0,
        }

    def org(self, org: User) -> dict[str, Any]:
        """Organization object of GET /orgs/{org}."""
        return {
            "id": org.id,
            "name": org.login,
            "username": org.login,
            "full_name": org.full_name,
            "email": org.email,
            "avatar_url": f"{self.root}avatars/{org.id}",
            "description": org.description,
            "website": org.website,
            "location": org.location,
            "visibility": "public",
            "repo_admin_change_team_access": False,
        }

    def label(self, label: Label) -> dict[str, Any]:
        """Label; colour without '#', url under the repo or the org."""
        if label.org_id is not None:
            url = f"{self.api}/orgs/{self.state.users[label.org_id].login}/labels/{label.id}"
        else:
            repo = self.state.repos[label.repo_id or 0]
            url = f"{self.api}/repos/{self.full_name(repo)}/labels/{label.id}"
        return {
            "id": label.id,
            "name": label.name,
            "exclusive": label.exclusive,
            "is_archived": label.is_archived,
            "color": label.color.lstrip("#"),
            "description": label.description,
            "url": url,
        }

    def full_name(self, repo: Repo) -> str:
        """owner/name with the canonical spelling."""
        return f"{self.state.users[repo.owner_id].login}/{repo.name}"

    def issue_html_url(self, issue: Issue) -> str:
        """{ROOT_URL}{owner}/{repo}/issues/{n} (pulls/{n} for PRs)."""
        kind = "pulls" if issue.is_pull else "issues"
        return f"{self.root}{self.full_name(self.state.repos[issue.repo_id])}/{kind}/{issue.number}"

    def issue(self, issue: Issue) -> dict[str, Any]:
        """Issue; `assignees` is null (not []) when empty, as Gitea sends it."""
        repo = self.state.repos[issue.repo_id]
        users = self.state.users
        assignees = [self.user(users[uid]) for uid in issue.assignee_ids]
        return {
            "id": issue.id,
            "url": f"{self.api}/repos/{self.full_name(repo)}/issues/{issue.number}",
            "html_url": self.issue_html_url(issue),
            "number": issue.number,
            "user": self.user(users[issue.poster_id]),
            "original_author": "",
            "original_author_id": 0,
            "title": issue.title,
            "body": issue.body,
            "ref": issue.ref,
            "assets": [],
            "labels": self.labels_sorted(issue.label_ids),
            "milestone": None,
            "assignee": assignees[0] if assignees else None,
            "assignees": assignees or None,
            "state": issue.state,
            "is_locked": issue.is_locked,
            "comments": len(issue.comments),
            "created_at": self.ts(issue.created_unix),
            "updated_at": self.ts(issue.updated_unix),
            "closed_at": self.ts(issue.closed_unix),
            "due_date": self.ts(issue.due_unix),
            "time_estimate": 0,
            "pull_request": self.pull_meta(issue),
            "repository": {
                "id": repo.id,
                "name": repo.name,
                "owner": users[repo.owner_id].login,
                "full_name": self.full_name(repo),
            },
            "pin_order": 0,
            "content_version": issue.content_version,
        }

    def labels_sorted(self, label_ids: Iterable[int]) -> list[dict[str, Any]]:
        """An issue's labels, sorted by name like Gitea loads them."""
        labels = sorted((self.state.labels[i] for i in label_ids), key=lambda lb: (lb.name, lb.id))
        return [self.label(lb) for lb in labels]

    def pull_meta(self, issue: Issue) -> dict[str, Any] | None:
        """PullRequestMeta for PRs, null for issues."""
        if not issue.is_pull:
            return None
        html = self.issue_html_url(issue)
        return {"merged": False, "merged_at": None, "draft": False, "html_url": html}

    def comment(self, comment: Comment, issue: Issue) -> dict[str, Any]:
        """Comment; `issue_url` is the issue's *HTML* url (a Gitea quirk)."""
        html = self.issue_html_url(issue)
        return {
            "id": comment.id,
            "html_url": f"{html}#issuecomment-{comment.id}",
            "pull_request_url": html if issue.is_pull else "",
            "issue_url": "" if issue.is_pull else html,
            "user": self.user(self.state.users[comment.poster_id]),
            "original_author": "",
            "original_author_id": 0,
            "body": comment.body,
            "assets": [],
            "created_at": self.ts(comment.created_unix),
            "updated_at": self.ts(comment.updated_unix),
        }

    def repo(self, repo: Repo, mode: int) -> dict[str, Any]:
        """Repository with all ~67 fields of the spec (pointers Gitea omits are null)."""
        owner = self.state.users[repo.owner_id]
        full = self.full_name(repo)
        issues = [i for i in self.state.repo_issues(repo) if i.state == "open"]
        host = self.root.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
        data: dict[str, Any] = {
            "id": repo.id,
            "owner": self.user(owner),
            "name": repo.name,
            "full_name": full,
            "description": repo.description,
            "empty": False,
            "private": repo.private,
            "fork": False,
            "template": False,
            "parent": None,
            "mirror": False,
            "size": 0,
            "language": "",
            "languages_url": f"{self.api}/repos/{full}/languages",
            "html_url": f"{self.root}{full}",
            "url": f"{self.api}/repos/{full}",
            "link": "",
            "ssh_url": f"git@{host}:{full}.git",
            "clone_url": f"{self.root}{full}.git",
            "original_url": "",
            "website": "",
            "stars_count": 0,
            "forks_count": 0,
            "watchers_count": 1,
            "open_issues_count": sum(1 for i in issues if not i.is_pull),
            "open_pr_counter": sum(1 for i in issues if i.is_pull),
            "release_counter": 0,
            "default_branch": repo.default_branch,
            "archived": repo.archived,
            "created_at": self.ts(repo.created_unix),
            "updated_at": self.ts(repo.updated_unix),
            "archived_at": self.ts(repo.archived_unix),
            "permissions": {"admin": mode >= ADMIN, "push": mode >= WRITE, "pull": mode >= READ},
            "has_issues": repo.has_issues,
            "internal_tracker": self._tracker(repo),
            "external_tracker": None,
            "has_wiki": True,
            "external_wiki": None,
            "has_pull_requests": repo.has_pull_requests,
            "repo_transfer": None,
            "topics": [],
            "licenses": [],
        }
        data.update(self._repo_settings(repo))
        return data

    def _tracker(self, repo: Repo) -> dict[str, bool] | None:
        if not repo.has_issues:
            return None
        return {
            "enable_time_tracker": True,
            "allow_only_contributors_to_track_time": True,
            "enable_issue_dependencies": True,
        }

    def _repo_settings(self, repo: Repo) -> dict[str, Any]:
        """The merge/unit settings part of Repository, with Gitea's defaults."""
        return {
            "has_projects": True,
            "projects_mode": "all",
            "has_releases": True,
            "has_packages": True,
            "has_actions": True,
            "has_code": True,
            "ignore_whitespace_conflicts": False,
            "allow_fast_forward_only_merge": True,
            "allow_merge_commits": True,
            "allow_rebase": True,
            "allow_rebase_explicit": True,
            "allow_squash_merge": True,
            "allow_rebase_update": True,
            "allow_manual_merge": False,
            "autodetect_manual_merge": False,
            "default_delete_branch_after_merge": False,
            "default_merge_style": "merge",
            "default_allow_maintainer_edit": False,
            "default_target_branch": repo.default_branch,
            "avatar_url": "",
            "internal": False,
            "mirror_interval": "",
            "mirror_updated": ZERO_TIME,
            "object_format_name": "sha1",
            "branch_count": 1,
        }


# --- request context, auth and form helpers --------------------------------------------------

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
)
_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})


def parse_rfc3339(text: str) -> int:
    """time.Parse(time.RFC3339) → unix seconds; raises ValueError with Go's wording."""
    if not _RFC3339.match(text):
        raise ValueError(
            f'parsing time "{text}" as "2006-01-02T15:04:05Z07:00": cannot parse "{text}" as "2006"'
        )
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def parse_go_int(text: str) -> int:
    """ctx.FormInt: strconv.Atoi, where anything unparsable counts as 0."""
    return int(text) if re.fullmatch(r"[+-]?\d+", text) else 0


@dataclass
class Call:
    """One API request after parsing: what the handlers and checks look at."""

    method: str
    path: str
    raw_path: str
    query: list[tuple[str, str]]
    headers: Headers
    body: bytes
    params: dict[str, str] = field(default_factory=dict)
    doer: User | None = None
    token: Token | None = None
    query_token: bool = False

    def form(self, name: str) -> str:
        """ctx.FormString: first value or ""."""
        return next((v for k, v in self.query if k == name), "")

    def form_int(self, name: str) -> int:
        """ctx.FormInt."""
        return parse_go_int(self.form(name))

    def form_bool(self, name: str) -> bool:
        """ctx.FormBool (strconv.ParseBool, invalid = false)."""
        return self.form(name) in _GO_TRUE


def page_options(call: Call, config: ServerConfig) -> tuple[int, int]:
    """utils.GetListOptions: page ≤ 0 → 1; limit ≤ 0 → default 30; limit > 50 → 50."""
    page = max(call.form_int("page"), 1)
    limit = call.form_int("limit")
    if limit <= 0:
        limit = config.default_paging_num
    return page, min(limit, config.max_response_items)


def link_header(call: Call, root_url: str, total: int, page_size: int) -> str | None:
    """context.SetLinkHeader: next,last,first,prev; keys re-sorted; None on a single page."""
    size = max(page_size, 1)
    pages = max((total + size - 1) // size, 1)
    current = min(max(call.form_int("page"), 1), pages)
    wanted: list[tuple[str, int]] = []
    if total > current * size:
        wanted.append(("next", current + 1))
    if not (total == 0 or (total > (current - 1) * size and total <= current * size)):
        wanted.append(("last", pages))
    if current != 1:
        wanted.append(("first", 1))
    if current > 1:
        wanted.append(("prev", current - 1))
    if not wanted:
        return None
    base = root_url + call.raw_path.lstrip("/")
    links = []
    for rel, page in wanted:
        pairs = [(k, v) for k, v in call.query if k != "page"] + [("page", str(page))]
        query = urlencode(sorted(pairs, key=lambda kv: kv[0]))
        links.append(f'<{base}?{query}>; rel="{rel}"')
    return ",".join(links)


# --- Go-like JSON binding -------------------------------------------------------------------


@dataclass(frozen=True)
class Form:
    """A Gitea API option struct: Go name, JSON fields with Go types, `binding:"Required"`."""

    go_name: str
    fields: Mapping[str, str]
    required: tuple[str, ...] = ()


CREATE_ISSUE = Form(
    "CreateIssueOption",
    {
        "title": "string",
        "body": "string",
        "ref": "string",
        "assignee": "string",
        "assignees": "[]string",
        "milestone": "int64",
        "labels": "[]int64",
        "due_date": "time",
        "closed": "bool",
    },
    ("title",),
)
EDIT_ISSUE = Form(
    "EditIssueOption",
    {
        "title": "string",
        "body": "string",
        "ref": "string",
        "assignee": "string",
        "assignees": "[]string",
        "milestone": "int64",
        "state": "string",
        "due_date": "time",
        "unset_due_date": "bool",
        "content_version": "int64",
    },
)
CREATE_LABEL = Form(
    "CreateLabelOption",
    {
        "name": "string",
        "color": "string",
        "description": "string",
        "exclusive": "bool",
        "is_archived": "bool",
    },
    ("name", "color"),
)
EDIT_LABEL = Form(
    "EditLabelOption",
    {
        "name": "string",
        "color": "string",
        "description": "string",
        "exclusive": "bool",
        "is_archived": "bool",
    },
)
CREATE_COMMENT = Form("CreateIssueCommentOption", {"body": "string"}, ("body",))
ISSUE_LABELS = Form("IssueLabelsOption", {"labels": "[]any"})


def _json_kind(value: Any) -> str:
    """Go's name for a JSON value in UnmarshalTypeError messages."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return f"number {json.dumps(value)}"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "null"


def _type_error(form: Form, name: str, go_type: str, value: Any) -> str | None:
    """The Go decoding error for `value` in field `name`, or None when it decodes."""
    if value is None:
        return None
    where = f"Go struct field {form.go_name}.{name}"
    if go_type.startswith("[]"):
        if not isinstance(value, list):
            return f"json: cannot unmarshal {_json_kind(value)} into {where} of type {go_type}"
        inner = go_type[2:]
        return next(
            (e for v in value if (e := _type_error(form, name, inner, v)) is not None), None
        )
    checks: dict[str, Callable[[Any], bool]] = {
        "string": lambda v: isinstance(v, str),
        "time": lambda v: isinstance(v, str),
        "bool": lambda v: isinstance(v, bool),
        "int64": lambda v: type(v) is int and -(2**63) <= v < 2**63,
        "any": lambda v: True,
    }
    if not checks[go_type](value):
        return f"json: cannot unmarshal {_json_kind(value)} into {where} of type {go_type}"
    if go_type == "time":
        try:
            parse_rfc3339(value)
        except ValueError as exc:
            return str(exc)
    return None


def _decode_json_text(body: bytes) -> Any:
    """Decode a body the way Go does: invalid UTF-8 and lone surrogates become U+FFFD."""
    text = body.decode("utf-8", errors="replace")
    return _scrub(json.loads(text)) if text.strip() else {}


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return re.sub("[\ud800-\udfff]", "\ufffd", value)
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    return value


def _go_syntax_error(exc: json.JSONDecodeError) -> str:
    """Approximation of Go's json.SyntaxError text."""
    if exc.pos >= len(exc.doc.rstrip()):
        return "unexpected EOF"
    return f"invalid character '{exc.doc[exc.pos]}' looking for beginning of value"


def bind(call: Call, form: Form) -> dict[str, Any]:
    """binding.Bind + Gitea's `bind` middleware: 422 with the first error, Go wording.

    Returns the present, non-null fields; keys match case-insensitively like encoding/json.
    Only JSON bodies bind: another content type leaves the struct empty, as the fields
    carry no `form` tags.
    """
    ctype = call.headers.get("content-type", "")
    if "json" in ctype:
        values = _bind_json(call.body, form)
    elif "form-urlencoded" in ctype or "multipart/form-data" in ctype:
        values = {}
    else:
        problem = "Empty Content-Type" if not ctype else "Unsupported Content-Type"
        raise ApiError(422, f"[]: {problem}")
    for name in form.required:
        if not values.get(name):
            raise ApiError(422, f"[{name.capitalize()}]: Required")
    return values


def _bind_json(body: bytes, form: Form) -> dict[str, Any]:
    try:
        document = _decode_json_text(body)
    except json.JSONDecodeError as exc:
        raise ApiError(422, f"[]: {_go_syntax_error(exc)}") from exc
    if not isinstance(document, dict):
        kind = _json_kind(document).split(" ")[0]
        raise ApiError(
            422, f"[]: json: cannot unmarshal {kind} into Go value of type structs.{form.go_name}"
        )
    lowered = {name.lower(): name for name in form.fields}
    values: dict[str, Any] = {}
    for key, value in document.items():
        name = key if key in form.fields else lowered.get(key.lower())
        if name is None:
            continue
        error = _type_error(form, name, form.fields[name], value)
        if error is not None:
            raise ApiError(422, f"[]: {error}")
        if value is None:
            values.pop(name, None)
        else:
            values[name] = value
    return values


# --- endpoint handlers ----------------------------------------------------------------------


class Api:
    """The Gitea endpoints; every handler runs with `state.lock` held."""

    def __init__(self, state: GiteaState) -> None:
        self.state = state
        self.render = Renderer(state, "http://localhost/")

    # -- shared checks, in Gitea's middleware order ---------------------------------------

    def require_token(self, call: Call) -> User:
        """reqToken(): 401 "token is required" for anonymous callers."""
        if call.doer is None:
            raise ApiError(401, "token is required")
        return call.doer

    def repo_assignment(self, call: Call) -> tuple[Repo, int]:
        """repoAssignment(): 404 for a missing repo *or* one the caller cannot read."""
        repo = self.state.find_repo(call.params["owner"], call.params["repo"])
        mode = 0 if repo is None else self.state.access_mode(call.doer, repo, call.token)
        if repo is None or mode == 0:
            raise ApiError(404)
        return repo, mode

    def org_assignment(self, call: Call) -> User:
        """orgAssignment(): 404 when the name is missing or is a user, not an org."""
        org = self.state.find_user(call.params["org"])
        if org is None or not org.is_org:
            raise ApiError(404)
        return org

    def issues_unit(self, repo: Repo, *, creating: bool = False) -> None:
        """mustEnableIssuesOrPulls / unit checks: disabled issues look missing (or 403)."""
        if repo.has_issues:
            return
        if creating and repo.has_pull_requests:
            raise ApiError(403, "issues are disabled for this repository")
        raise ApiError(404)

    def not_archived(self, repo: Repo) -> None:
        """mustNotBeArchived(): 423 on create issue/comment in an archived repo."""
        if repo.archived:
            raise ApiError(423, f"{self.render.full_name(repo)} is archived")

    def issue_or_404(self, call: Call, repo: Repo) -> Issue:
        """GetIssueByIndex with the usual 404."""
        issue = self.state.find_issue(repo, parse_go_int(call.params["index"]))
        if issue is None:
            raise ApiError(404)
        if not issue.is_pull:
            self.issues_unit(repo)
        return issue

    def issue_or_500(self, call: Call, repo: Repo) -> Issue:
        """The comments endpoints answer 500 for a missing issue in Gitea 1.26 (quirk)."""
        issue = self.state.find_issue(repo, parse_go_int(call.params["index"]))
        if issue is None:
            raise ApiError(500)
        return issue

    def before_since(self, call: Call) -> tuple[int | None, int | None]:
        """context.GetQueryBeforeSince: RFC 3339 or 422."""
        result: list[int | None] = []
        for name in ("before", "since"):
            raw = call.form(name)
            try:
                result.append(parse_rfc3339(raw) if raw else None)
            except ValueError as exc:
                raise ApiError(422, str(exc)) from exc
        return result[0], result[1]

    def paged(
        self, call: Call, items: list[Any], *, link: bool, link_size: int | None = None
    ) -> tuple[list[Any], dict[str, str]]:
        """Slice a list page and build X-Total-Count (+ Link when asked for)."""
        page, size = page_options(call, self.state.config)
        headers = {"X-Total-Count": str(len(items))}
        if link:
            value = link_header(call, self.render.root, len(items), link_size or size)
            if value:
                headers["Link"] = value
        return items[(page - 1) * size : page * size], headers

    # -- misc endpoints ---------------------------------------------------------------------

    def get_version(self, call: Call) -> Reply:
        """GET /version (no auth needed, but a bad token is still 401)."""
        return Reply(200, {"version": self.state.config.version})

    def get_user(self, call: Call) -> Reply:
        """GET /user: the token's owner."""
        doer = self.require_token(call)
        return Reply(200, self.render.user(doer, doer))

    def get_repo(self, call: Call) -> Reply:
        """GET /repos/{owner}/{repo}."""
        repo, mode = self.repo_assignment(call)
        return Reply(200, self.render.repo(repo, mode))

    def get_org(self, call: Call) -> Reply:
        """GET /orgs/{org}: 404 for users, which is how clients tell orgs apart."""
        return Reply(200, self.render.org(self.org_assignment(call)))

    # -- labels -----------------------------------------------------------------------------

    def sorted_labels(self, call: Call, labels: list[Label]) -> list[Label]:
        """Label list order: name A→Z unless `sort` says otherwise (not in the spec)."""
        sort = call.form("sort")
        if sort in ("leastissues", "mostissues"):
            counts = {lb.id: 0 for lb in labels}
            for issue in self.state.all_issues.values():
                for lid in issue.label_ids:
                    if lid in counts:
                        counts[lid] += 1
            return sorted(
                labels,
                key=lambda lb: (counts[lb.id] * (-1 if sort == "mostissues" else 1), lb.id),
            )
        ordered = sorted(labels, key=lambda lb: (lb.name, lb.id))
        return ordered[::-1] if sort == "reversealphabetically" else ordered

    def list_labels(self, call: Call, labels: list[Label]) -> Reply:
        """Label lists: X-Total-Count but no Link header (quirk)."""
        page, headers = self.paged(call, self.sorted_labels(call, labels), link=False)
        return Reply(200, [self.render.label(lb) for lb in page], headers)

    def create_label_values(self, call: Call, form: Form) -> dict[str, Any]:
        """Bind + colour normalisation shared by repo and org label creation."""
        values = bind(call, form)
        try:
            color = normalize_color(values["color"])
        except InvalidColorError as exc:
            raise ApiError(422, str(exc)) from exc
        return {
            "name": values["name"],
            "color": color,
            "description": values.get("description", ""),
            "exclusive": bool(values.get("exclusive", False)),
            "is_archived": bool(values.get("is_archived", False)),
        }

    def repo_labels(self, call: Call) -> Reply:
        """GET /repos/{o}/{r}/labels: only the repo's own labels."""
        repo, _ = self.repo_assignment(call)
        return self.list_labels(call, self.state.repo_labels(repo))

    def create_repo_label(self, call: Call) -> Reply:
        """POST /repos/{o}/{r}/labels: duplicates allowed (201, new id)."""
        repo, mode = self.repo_assignment(call)
        self.require_token(call)
        if mode < WRITE:
            raise ApiError(403, "write permission is required")
        values = self.create_label_values(call, CREATE_LABEL)
        label = self.state.new_label(repo_id=repo.id, **values)
        return Reply(201, self.render.label(label))

    def get_repo_label(self, call: Call) -> Reply:
        """GET /repos/{o}/{r}/labels/{id}: the id may also be a label *name*."""
        repo, _ = self.repo_assignment(call)
        ref = call.params["id"]
        labels = self.state.repo_labels(repo)
        if re.fullmatch(r"[+-]?\d+", ref):
            found = [lb for lb in labels if lb.id == int(ref)]
        else:
            found = [lb for lb in labels if lb.name == ref]
        if not found:
            raise ApiError(404)
        return Reply(200, self.render.label(found[0]))

    def edit_repo_label(self, call: Call) -> Reply:
        """PATCH /repos/{o}/{r}/labels/{id}: `is_archived` resets to false when omitted."""
        repo, mode = self.repo_assignment(call)
        self.require_token(call)
        if mode < WRITE:
            raise ApiError(403, "write permission is required")
        values = bind(call, EDIT_LABEL)
        label_id = parse_go_int(call.params["id"])
        label = next((lb for lb in self.state.repo_labels(repo) if lb.id == label_id), None)
        if label is None:
            raise ApiError(404)
        if "color" in values:
            try:
                label.color = normalize_color(values["color"])
            except InvalidColorError as exc:
                raise ApiError(422, str(exc)) from exc
        label.name = values.get("name", label.name)
        label.exclusive = values.get("exclusive", label.exclusive)
        label.description = values.get("description", label.description)
        label.is_archived = bool(values.get("is_archived", False))
        return Reply(200, self.render.label(label))

    def org_labels(self, call: Call) -> Reply:
        """GET /orgs/{org}/labels: 404 when {org} is a user."""
        org = self.org_assignment(call)
        return self.list_labels(call, self.state.org_labels_of(org.id))

    def create_org_label(self, call: Call) -> Reply:
        """POST /orgs/{org}/labels: org owners (here: members) only."""
        org = self.org_assignment(call)
        doer = self.require_token(call)
        if doer.id not in org.member_ids and not doer.is_admin:
            raise ApiError(403, "must be an organization owner")
        values = self.create_label_values(call, CREATE_LABEL)
        label = self.state.new_label(org_id=org.id, **values)
        return Reply(201, self.render.label(label))

    # -- issue list and search ------------------------------------------------------------

    def keyword_match(self, issue: Issue, keyword: str) -> bool:
        """Numeric q → database (also matches number); other q → the lagging indexer."""
        needle = keyword.lower()
        if re.fullmatch(r"[+-]?\d+", keyword):
            if issue.number == int(keyword):
                return True
            return needle in issue.searchable_text.lower()
        indexed = self.state.indexed_text(issue)
        return indexed is not None and needle in indexed.lower()

    def common_filter(
        self, call: Call, issue: Issue, before: int | None, since: int | None
    ) -> bool:
        """state / type / since / before / q, shared by list and search."""
        wanted = call.form("state")
        if wanted != "all" and issue.state != ("closed" if wanted == "closed" else "open"):
            return False
        kind = call.form("type")
        if (kind == "issues" and issue.is_pull) or (kind == "pulls" and not issue.is_pull):
            return False
        if since is not None and issue.updated_unix < since:
            return False
        if before is not None and issue.updated_unix > before:
            return False
        keyword = call.form("q").strip()
        return not keyword or "\x00" in keyword or self.keyword_match(issue, keyword)

    def user_filter(self, call: Call, name: str) -> User | None:
        """created_by / assigned_by / mentioned_by: unknown user → 404 with `errors`."""
        login = call.form(name)
        if not login:
            return None
        user = self.state.find_user(login)
        if user is None:
            raise ApiError(404, errors=[f"user redirect does not exist [name: {login}]"])
        return user

    def list_issues(self, call: Call) -> Reply:
        """GET /repos/{o}/{r}/issues: labels are AND-ed over *repo* labels (quirk)."""
        repo, _ = self.repo_assignment(call)
        before, since = self.before_since(call)
        names = call.form("labels").split(",")
        label_ids = [lb.id for lb in self.state.repo_labels(repo) if lb.name in names]
        kind = call.form("type")
        if not repo.has_issues and (kind == "issues" or not repo.has_pull_requests):
            raise ApiError(404)
        people = {n: self.user_filter(call, n) for n in ("created_by", "assigned_by")}
        mentioned = self.user_filter(call, "mentioned_by")
        found = []
        for issue in self.state.repo_issues(repo):
            if not repo.has_issues and not issue.is_pull:
                continue
            if not self.common_filter(call, issue, before, since):
                continue
            if not all(lid in issue.label_ids for lid in label_ids):
                continue
            if not self.people_match(issue, people, mentioned):
                continue
            found.append(issue)
        found.sort(key=lambda i: (i.created_unix, i.id), reverse=True)
        page, headers = self.paged(call, found, link=True)
        return Reply(200, [self.render.issue(i) for i in page], headers)

    def people_match(
        self, issue: Issue, people: dict[str, User | None], mentioned: User | None
    ) -> bool:
        """Poster / assignee / @mention filters."""
        poster, assignee = people.get("created_by"), people.get("assigned_by")
        if poster is not None and issue.poster_id != poster.id:
            return False
        if assignee is not None and assignee.id not in issue.assignee_ids:
            return False
        return mentioned is None or f"@{mentioned.login}" in issue.searchable_text

    def search_repos(self, call: Call) -> list[Repo]:
        """Repos visible to the caller, optionally narrowed by owner/team (400 if unknown)."""
        owner_name, team = call.form("owner"), call.form("team")
        repos = list(self.state.repos.values())
        if owner_name:
            owner = self.state.find_user(owner_name)
            if owner is None:
                raise ApiError(400, f"user redirect does not exist [name: {owner_name}]")
            repos = [r for r in repos if r.owner_id == owner.id]
        if team:
            if not owner_name:
                raise ApiError(400, "Owner organisation is required for filtering on team")
            raise ApiError(400, f"team does not exist [org_id: 0, team_id: 0, name: {team}]")
        return [r for r in repos if self.state.access_mode(call.doer, r, call.token) > 0]

    def search_issues(self, call: Call) -> Reply:
        """GET /repos/issues/search: labels are ANY; Link uses the *unclamped* limit."""
        before, since = self.before_since(call)
        repo_ids = {r.id for r in self.search_repos(call) if r.has_issues}
        names = [n for n in call.form("labels").strip().split(",") if n]
        any_ids = {lb.id for lb in self.state.labels.values() if lb.name in names}
        found = []
        for issue in self.state.all_issues.values():
            if issue.repo_id not in repo_ids:
                continue
            if not self.common_filter(call, issue, before, since):
                continue
            if any_ids and not any_ids.intersection(issue.label_ids):
                continue
            if not self.search_self_filters(call, issue):
                continue
            found.append(issue)
        found.sort(key=lambda i: (i.created_unix, i.id), reverse=True)
        return self.search_page(call, found)

    def search_self_filters(self, call: Call, issue: Issue) -> bool:
        """created / assigned / mentioned booleans apply to the signed-in user."""
        doer = call.doer
        if doer is None:
            return True
        if call.form_bool("created") and issue.poster_id != doer.id:
            return False
        if call.form_bool("assigned") and doer.id not in issue.assignee_ids:
            return False
        if call.form_bool("review_requested") or call.form_bool("reviewed"):
            return False
        return not call.form_bool("mentioned") or f"@{doer.login}" in issue.searchable_text

    def search_page(self, call: Call, found: list[Issue]) -> Reply:
        """Search paging: limit 0 → UI paging (20), clamp 50, Link built from raw limit."""
        config = self.state.config
        raw_limit = call.form_int("limit")
        if raw_limit == 0:
            raw_limit = config.ui_issue_paging_num
        elif raw_limit < 0:
            raw_limit = config.default_paging_num
        size = min(raw_limit, config.max_response_items)
        page = max(call.form_int("page"), 1)
        headers = {"X-Total-Count": str(len(found))}
        link = link_header(call, self.render.root, len(found), raw_limit)
        if link:
            headers["Link"] = link
        chunk = found[(page - 1) * size : page * size]
        return Reply(200, [self.render.issue(i) for i in chunk], headers)

    # -- single issues --------------------------------------------------------------------

    def get_issue(self, call: Call) -> Reply:
        """GET /repos/{o}/{r}/issues/{index}: PR numbers work too (pull_request set)."""
        repo, _ = self.repo_assignment(call)
        return Reply(200, self.render.issue(self.issue_or_404(call, repo)))

    def resolve_label_ids(self, repo: Repo, ids: Iterable[int]) -> list[Label]:
        """Label ids usable in `repo`; unknown and foreign ids are silently dropped."""
        usable = {lb.id: lb for lb in self.state.usable_labels(repo)}
        return [usable[i] for i in dict.fromkeys(ids) if i in usable]

    def resolve_assignees(self, repo: Repo, values: dict[str, Any]) -> list[int]:
        """assignee/assignees logins → ids; unknown or without access → 422."""
        logins = list(values.get("assignees") or [])
        if values.get("assignee"):
            logins.insert(0, values["assignee"])
        ids: list[int] = []
        for login in dict.fromkeys(logins):
            user = self.state.find_user(login)
            if user is None or user.is_org:
                raise ApiError(422, f"Assignee does not exist: [name: {login}]")
            if self.state.access_mode(user, repo) < WRITE:
                raise ApiError(
                    422,
                    f"user does not have access to repo [user_id: {user.id}, "
                    f"repo_name: {repo.name}]",
                )
            ids.append(user.id)
        return ids

    def create_issue(self, call: Call) -> Reply:
        """POST /repos/{o}/{r}/issues (title trimmed + truncated; non-writer extras dropped)."""
        repo, mode = self.repo_assignment(call)
        self.issues_unit(repo, creating=True)
        doer = self.require_token(call)
        self.not_archived(repo)
        values = bind(call, CREATE_ISSUE)
        writer = mode >= WRITE
        assignees = self.resolve_assignees(repo, values) if writer else []
        labels = self.resolve_label_ids(repo, values.get("labels") or []) if writer else []
        due = values.get("due_date")
        issue = self.state.new_issue(
            repo,
            doer,
            normalize_title(values["title"]),
            values.get("body", ""),
            ref=values.get("ref", ""),
            assignee_ids=assignees,
            due_unix=parse_rfc3339(due) if due else None,
        )
        self.state.attach_labels(issue, labels)
        if values.get("closed"):
            self.state.set_issue_state(issue, "closed")
        return Reply(201, self.render.issue(issue))

    def edit_issue(self, call: Call) -> Reply:
        """PATCH /repos/{o}/{r}/issues/{index}: answers 201; unknown state → 412."""
        repo, mode = self.repo_assignment(call)
        doer = self.require_token(call)
        values = bind(call, EDIT_ISSUE)
        issue = self.issue_or_404(call, repo)
        writer = mode >= WRITE
        if issue.poster_id != doer.id and not writer:
            raise ApiError(403, empty=True)
        new_state = values.get("state")
        if new_state is not None and new_state not in ("open", "closed"):
            raise ApiError(412, f"unknown state: {new_state}")
        version = values.get("content_version")
        if "body" in values and version is not None and version != issue.content_version:
            raise ApiError(
                409, "The document has been modified by another user, please refresh and retry"
            )
        changed = self.apply_edits(issue, repo, values, writer)
        if new_state is not None:
            changed = self.state.set_issue_state(issue, new_state) or changed
        if changed:
            issue.updated_unix = self.state.now()
            self.state.reindex(issue)
        return Reply(201, self.render.issue(issue))

    def apply_edits(self, issue: Issue, repo: Repo, values: dict[str, Any], writer: bool) -> bool:
        """Title/body/ref/deadline/assignees of an edit; True if anything changed."""
        before = (issue.title, issue.body, issue.ref, issue.due_unix, list(issue.assignee_ids))
        if values.get("title"):
            issue.title = normalize_title(values["title"])
        if "body" in values and values["body"] != issue.body:
            issue.body = values["body"]
            issue.content_version += 1
        issue.ref = values.get("ref", issue.ref)
        if writer and values.get("unset_due_date"):
            issue.due_unix = None
        elif writer and values.get("due_date"):
            issue.due_unix = parse_rfc3339(values["due_date"])
        if writer and ("assignees" in values or "assignee" in values):
            issue.assignee_ids = self.resolve_assignees(repo, values)
        after = (issue.title, issue.body, issue.ref, issue.due_unix, issue.assignee_ids)
        return before != after

    # -- comments ---------------------------------------------------------------------------

    def list_comments(self, call: Call) -> Reply:
        """GET .../comments: not paged, oldest first; missing issue → 500 (quirk)."""
        repo, _ = self.repo_assignment(call)
        before, since = self.before_since(call)
        issue = self.issue_or_500(call, repo)
        found = [
            c
            for c in issue.comments
            if (since is None or c.updated_unix >= since)
            and (before is None or c.updated_unix <= before)
        ]
        body = [self.render.comment(c, issue) for c in found]
        return Reply(200, body, {"X-Total-Count": str(len(found))})

    def create_comment(self, call: Call) -> Reply:
        """POST .../comments: empty body → 422, missing issue → 500, archived → 423."""
        repo, mode = self.repo_assignment(call)
        doer = self.require_token(call)
        self.not_archived(repo)
        values = bind(call, CREATE_COMMENT)
        issue = self.issue_or_500(call, repo)
        if issue.is_locked and mode < WRITE:
            raise ApiError(403, "issue is locked")
        comment = self.state.new_comment(issue, doer, values["body"])
        return Reply(201, self.render.comment(comment, issue))

    # -- issue labels -------------------------------------------------------------------

    def issue_label_reply(self, issue: Issue) -> Reply:
        """The issue's full label list after a change."""
        return Reply(200, self.render.labels_sorted(issue.label_ids))

    def get_issue_labels(self, call: Call) -> Reply:
        """GET .../issues/{index}/labels."""
        repo, _ = self.repo_assignment(call)
        return self.issue_label_reply(self.issue_or_404(call, repo))

    def parse_label_refs(self, repo: Repo, refs: list[Any]) -> list[Label]:
        """IssueLabelsOption.labels: all ids or all names (repo + org), never mixed → 400."""
        is_id = [type(r) is int or (isinstance(r, float) and r.is_integer()) for r in refs]
        if all(is_id):
            return self.resolve_label_ids(repo, [int(r) for r in refs])
        if all(isinstance(r, str) for r in refs):
            usable = self.state.usable_labels(repo)
            return [lb for name in dict.fromkeys(refs) for lb in usable if lb.name == name]
        if any(is_id) and any(isinstance(r, str) for r in refs):
            raise ApiError(400, "labels must be all label ids or all label names")
        raise ApiError(400, "a label must be an integer id or a string name")

    def change_issue_labels(self, call: Call, *, replace: bool) -> Reply:
        """POST (add) and PUT (replace) .../issues/{index}/labels."""
        repo, mode = self.repo_assignment(call)
        self.require_token(call)
        values = bind(call, ISSUE_LABELS)
        issue = self.issue_or_404(call, repo)
        labels = self.parse_label_refs(repo, list(values.get("labels") or []))
        if mode < WRITE:
            raise ApiError(403, "write permission is required")
        if replace:
            issue.label_ids = []
        self.state.attach_labels(issue, labels)
        issue.updated_unix = self.state.now()
        return self.issue_label_reply(issue)

    def add_issue_labels(self, call: Call) -> Reply:
        """POST .../labels: adds; unknown ids/names silently dropped."""
        return self.change_issue_labels(call, replace=False)

    def replace_issue_labels(self, call: Call) -> Reply:
        """PUT .../labels: replaces the whole set."""
        return self.change_issue_labels(call, replace=True)

    def clear_issue_labels(self, call: Call) -> Reply:
        """DELETE .../labels: removes all labels (204)."""
        repo, mode = self.repo_assignment(call)
        self.require_token(call)
        issue = self.issue_or_404(call, repo)
        if mode < WRITE:
            raise ApiError(403, "write permission is required")
        issue.label_ids = []
        issue.updated_unix = self.state.now()
        return Reply(204)

    def remove_issue_label(self, call: Call) -> Reply:
        """DELETE .../labels/{id}: 204; a label id that exists nowhere → 422."""
        repo, mode = self.repo_assignment(call)
        self.require_token(call)
        issue = self.issue_or_404(call, repo)
        if mode < WRITE:
            raise ApiError(403, "write permission is required")
        label_id = parse_go_int(call.params["id"])
        if label_id not in self.state.labels:
            raise ApiError(422, f"label does not exist [label_id: {label_id}]")
        if label_id in issue.label_ids:
            issue.label_ids.remove(label_id)
            issue.updated_unix = self.state.now()
        return Reply(204)


# --- routing, auth, faults, request log ------------------------------------------------------

Handler = Callable[[Api, Call], Reply]
_SEG = r"(?P<{}>[^/]+)"
_REPO = "/repos/" + _SEG.format("owner") + "/" + _SEG.format("repo")
_ISSUE = _REPO + "/issues/" + _SEG.format("index")


@dataclass(frozen=True)
class ApiRoute:
    """One endpoint: method, path pattern, handler and the token scope category."""

    method: str
    pattern: re.Pattern[str]
    handler: Handler
    scope: str | None


def _route(method: str, pattern: str, handler: Handler, scope: str | None) -> ApiRoute:
    return ApiRoute(method, re.compile(f"^{pattern}$"), handler, scope)


ROUTES: tuple[ApiRoute, ...] = (
    _route("GET", "/version", Api.get_version, None),
    _route("GET", "/user", Api.get_user, "user"),
    _route("GET", "/repos/issues/search", Api.search_issues, "issue"),
    _route("GET", _REPO, Api.get_repo, "repository"),
    _route("GET", "/orgs/" + _SEG.format("org"), Api.get_org, "organization"),
    _route("GET", "/orgs/" + _SEG.format("org") + "/labels", Api.org_labels, "organization"),
    _route("POST", "/orgs/" + _SEG.format("org") + "/labels", Api.create_org_label, "organization"),
    _route("GET", _REPO + "/labels", Api.repo_labels, "issue"),
    _route("POST", _REPO + "/labels", Api.create_repo_label, "issue"),
    _route("GET", _REPO + "/labels/" + _SEG.format("id"), Api.get_repo_label, "issue"),
    _route("PATCH", _REPO + "/labels/" + _SEG.format("id"), Api.edit_repo_label, "issue"),
    _route("GET", _REPO + "/issues", Api.list_issues, "issue"),
    _route("POST", _REPO + "/issues", Api.create_issue, "issue"),
    _route("GET", _ISSUE, Api.get_issue, "issue"),
    _route("PATCH", _ISSUE, Api.edit_issue, "issue"),
    _route("GET", _ISSUE + "/comments", Api.list_comments, "issue"),
    _route("POST", _ISSUE + "/comments", Api.create_comment, "issue"),
    _route("GET", _ISSUE + "/labels", Api.get_issue_labels, "issue"),
    _route("POST", _ISSUE + "/labels", Api.add_issue_labels, "issue"),
    _route("PUT", _ISSUE + "/labels", Api.replace_issue_labels, "issue"),
    _route("DELETE", _ISSUE + "/labels", Api.clear_issue_labels, "issue"),
    _route("DELETE", _ISSUE + "/labels/" + _SEG.format("id"), Api.remove_issue_label, "issue"),
)


def match_route(method: str, path: str) -> tuple[ApiRoute | None, dict[str, str], bool]:
    """Find the route; the bool says whether the path exists under another method."""
    other_method = False
    for route in ROUTES:
        found = route.pattern.match(path)
        if found is None:
            continue
        if route.method == method:
            return route, found.groupdict(), False
        other_method = True
    return None, {}, other_method


def authenticate(state: GiteaState, call: Call) -> None:
    """Gitea's auth chain: query token, then Authorization token/Bearer, then Basic.

    An unknown token or bad basic credentials → 401 on *every* route; a header that is
    not exactly two fields is ignored (the caller stays anonymous).
    """
    secret = _query_token(state, call)
    header = call.headers.get("authorization", "")
    parts = header.split()
    if secret is None and len(parts) == 2 and parts[0].lower() in ("token", "bearer"):
        secret = parts[1]
    if secret is None and len(parts) == 2 and parts[0].lower() == "basic":
        _basic_auth(state, call, parts[1])
        return
    if secret is None:
        return
    token = state.tokens.get(secret)
    if token is None:
        raise ApiError(401, "invalid username, password or token")
    call.token, call.doer = token, state.users[token.user_id]


def _query_token(state: GiteaState, call: Call) -> str | None:
    """?token= / ?access_token= (deprecated; flagged with X-Gitea-Warning)."""
    if state.config.disable_query_auth_token:
        return None
    for name in ("token", "access_token"):
        value = call.form(name)
        if value:
            call.query_token = True
            return value
    return None


def _basic_auth(state: GiteaState, call: Call, encoded: str) -> None:
    """Basic auth: token as password (or as username with "" / x-oauth-basic), or password."""
    try:
        user_name, _, password = base64.b64decode(encoded).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ApiError(401, "invalid username, password or token") from exc
    secret = user_name if password in ("", "x-oauth-basic") else password
    token = state.tokens.get(secret)
    if token is not None:
        call.token, call.doer = token, state.users[token.user_id]
        return
    user = state.find_user(user_name)
    if user is None or user.is_org or user.password is None or user.password != password:
        raise ApiError(401, "invalid username, password or token")
    call.doer = user


def check_scope(call: Call, category: str | None) -> None:
    """tokenRequiresScopes: GET needs read:<cat>, writes need write:<cat>; before any 404."""
    token = call.token
    if category is None or token is None or token.scopes is None:
        return
    level = "read" if call.method in ("GET", "HEAD") else "write"
    granted = set(token.scopes)
    if granted & {"all", f"{level}:{category}", f"write:{category}"}:
        return
    raise ApiError(
        403,
        "token does not have at least one of required scope(s), "
        f"required=[{level}:{category}], token scope={','.join(token.scopes)}",
    )


_TRANSPORTS: dict[tuple[Any, Any], asyncio.BaseTransport] = {}
_TRANSPORTS_LOCK = threading.Lock()


def register_transport(local: Any, remote: Any, transport: asyncio.BaseTransport) -> None:
    """Called by the server's protocol so the app can cut a connection ("drop" faults)."""
    with _TRANSPORTS_LOCK:
        _TRANSPORTS[(local, remote)] = transport


def unregister_transport(local: Any, remote: Any) -> None:
    """Forget a closed connection."""
    with _TRANSPORTS_LOCK:
        _TRANSPORTS.pop((local, remote), None)


class ConnectionDroppedError(ConnectionError):
    """Raised for "drop" faults when the app is not run by GiteaTestServer (no transport)."""


async def drop_connection(scope: Scope) -> None:
    """Close the TCP connection without a single response byte.

    The client sees "Server disconnected without sending a response"
    (httpx.RemoteProtocolError). The short sleeps let uvicorn notice the close, so it does
    not try to answer 500 on the dead connection.
    """
    with _TRANSPORTS_LOCK:
        transport = _TRANSPORTS.get((scope.get("server"), scope.get("client")))
    if transport is None:
        raise ConnectionDroppedError("drop fault: no transport known for this connection")
    transport.close()
    for _ in range(3):
        await asyncio.sleep(0)


_REDACTED_QUERY = frozenset({"token", "access_token"})
_REDACTED_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


class GiteaAsgi:
    """ASGI app mounted at /api/v1: log → fault → auth → route → scope → handler."""

    def __init__(self, state: GiteaState) -> None:
        self.state = state
        self.api = Api(state)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request, applying at most one fault."""
        request = Request(scope, receive)
        call = Call(
            method=scope["method"].upper(),
            path=scope["path"],
            raw_path=(scope.get("raw_path") or scope["path"].encode()).decode("latin-1"),
            query=parse_qsl(scope.get("query_string", b"").decode("latin-1"), True),
            headers=request.headers,
            body=await request.body(),
        )
        entry = self.record(call)
        with self.state.lock:
            self.api.render = Renderer(self.state, self.root_url(scope))
        fault = self.state.take_fault(call.method, call.path)
        if fault is not None:
            self.note(entry, fault=fault.kind)
            early = await self.early_fault(fault.kind, fault.params, scope)
            if early is not None:
                await self.send_reply(early, call, entry, scope, receive, send)
                return
        reply = self.serve(call)
        if fault is not None and fault.kind == "drop":
            await drop_connection(scope)
            return
        if fault is not None and fault.kind == "lost_response":
            reply = self.error_reply(ApiError(500))
        await self.send_reply(reply, call, entry, scope, receive, send)

    async def early_fault(
        self, kind: str, params: dict[str, Any], scope: Scope
    ) -> Reply | Response | None:
        """Faults that act before the work: answer, drop, or just wait."""
        if kind == "error":
            status = int(params.get("status", 500))
            return self.error_reply(ApiError(status, str(params.get("message", ""))))
        if kind == "rate_limit":
            response = proxy_response(429, "Too Many Requests")
            response.headers["Retry-After"] = str(params.get("retry_after", 1))
            return response
        if kind == "status":
            status = int(params.get("status", 413))
            return proxy_response(status, str(params.get("reason", _reason(status))))
        if kind == "drop_before":
            await drop_connection(scope)
            return Reply(0)
        if kind == "delay":
            await asyncio.sleep(float(params.get("seconds", 1.0)))
        return None

    def serve(self, call: Call) -> Reply:
        """Run the Gitea logic under the state lock; exceptions become Gitea-shaped errors."""
        with self.state.lock:
            try:
                return self.dispatch(call)
            except ApiError as exc:
                return self.error_reply(exc)
            except Exception:
                log.exception("Gitea test double crashed on %s %s", call.method, call.path)
                return self.error_reply(ApiError(500))

    def dispatch(self, call: Call) -> Reply:
        """Auth, route, scope check, handler — in Gitea's order."""
        authenticate(self.state, call)
        sub_path = call.path[len(API_PREFIX) :] if call.path.startswith(API_PREFIX) else call.path
        route, params, other_method = match_route(call.method, sub_path.rstrip("/") or "/")
        if route is None:
            if other_method:
                raise ApiError(405, "Method Not Allowed (not implemented by the Gitea test double)")
            raise ApiError(404)
        call.params = params
        check_scope(call, route.scope)
        return route.handler(self.api, call)

    def root_url(self, scope: Scope) -> str:
        """Configured ROOT_URL (with trailing slash), else derived from the listening socket."""
        if self.state.root_url:
            return self.state.root_url.rstrip("/") + "/"
        host, port = scope.get("server") or ("127.0.0.1", 80)
        return f"http://{host}:{port}/"

    def error_reply(self, exc: ApiError) -> Reply:
        """Gitea's error bodies: {message,url}; 404 adds `errors`; 500 has an empty message."""
        if exc.empty:
            return Reply(exc.status)
        payload: dict[str, Any] = {
            "message": exc.message,
            "url": self.api.render.root + "api/swagger",
        }
        if exc.status == 404:
            payload["message"] = exc.message or "not found"
            payload["errors"] = exc.errors
        if exc.status == 500:
            payload["message"] = ""
        return Reply(exc.status, payload)

    async def send_reply(
        self,
        reply: Reply | Response,
        call: Call,
        entry: RecordedRequest,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """Serialise a Reply (or send a prepared Response) and note the status in the log."""
        if isinstance(reply, Reply) and reply.status == 0:
            return
        response = reply if isinstance(reply, Response) else self.to_response(reply, call)
        self.note(entry, status=response.status_code)
        await response(scope, receive, send)

    def to_response(self, reply: Reply, call: Call) -> Response:
        """Headers Gitea adds: JSON type, CORS exposure of paging headers, query-token warning."""
        headers = dict(reply.headers)
        exposed = [h for h in ("Link", "X-Total-Count") if h in headers]
        if exposed:
            headers["Access-Control-Expose-Headers"] = ", ".join(exposed)
        if call.query_token:
            headers["X-Gitea-Warning"] = QUERY_TOKEN_WARNING
        if reply.payload is NO_BODY:
            return Response(status_code=reply.status, headers=headers)
        headers["Content-Type"] = JSON_TYPE
        return Response(go_json(reply.payload), status_code=reply.status, headers=headers)

    def record(self, call: Call) -> RecordedRequest:
        """Log the request (credentials removed) before anything else can go wrong."""
        query = {k: ("REDACTED" if k in _REDACTED_QUERY else v) for k, v in reversed(call.query)}
        headers = {k: v for k, v in call.headers.items() if k not in _REDACTED_HEADERS}
        probe = dataclasses.replace(call)
        with self.state.lock, contextlib.suppress(ApiError):
            authenticate(self.state, probe)
        parsed: Any = None
        text: str | None = None
        if call.body:
            try:
                parsed = json.loads(call.body)
            except ValueError:
                text = call.body[:65536].decode("utf-8", errors="replace")
        return self.state.record_request(
            method=call.method,
            path=call.path,
            query=query,
            headers=headers,
            json=parsed,
            body_text=text,
            user=probe.doer.login if probe.doer else None,
        )

    def note(self, entry: RecordedRequest, **fields: Any) -> None:
        """Update a log entry under the lock (tests read the log from another thread)."""
        with self.state.lock:
            for key, value in fields.items():
                setattr(entry, key, value)


def _reason(status: int) -> str:
    """nginx's wording for the statuses it produces itself."""
    if status == 413:
        return "Request Entity Too Large"
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def proxy_response(status: int, reason: str) -> Response:
    """What a reverse proxy (nginx) answers itself: a small HTML page, not Gitea JSON."""
    body = (
        f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )
    return Response(body, status_code=status, media_type="text/html")


# --- test control endpoints ------------------------------------------------------------------

_FAULT_FIELDS = ("method", "path_regex", "kind", "times", "params", "path")


def _fault_from_json(state: GiteaState, data: Mapping[str, Any]) -> dict[str, Any]:
    """POST /_test/faults body → state.add_fault; unknown keys are fault params."""
    params = dict(data.get("params") or {})
    params.update({k: v for k, v in data.items() if k not in _FAULT_FIELDS})
    fault = state.add_fault(
        str(data.get("method", "*")),
        str(data.get("path_regex", data.get("path", ".*"))),
        str(data["kind"]),
        data.get("times", 1),
        **params,
    )
    return fault.as_dict()


def control_routes(state: GiteaState) -> list[Route]:
    """/_test/faults, /_test/requests, /_test/config, /_test/clock for out-of-process tests."""

    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            state.clear_faults()
            return Response(status_code=204)
        if request.method == "GET":
            return JSONResponse([f.as_dict() for f in state.faults])
        try:
            return JSONResponse(_fault_from_json(state, await request.json()), status_code=201)
        except (ValueError, KeyError, TypeError, re.error) as exc:
            return JSONResponse({"message": f"bad fault: {exc!r}"}, status_code=400)

    async def requests(request: Request) -> Response:
        if request.method == "DELETE":
            state.clear_requests()
            return Response(status_code=204)
        return JSONResponse([r.as_dict() for r in state.requests])

    async def config(request: Request) -> Response:
        if request.method == "PATCH":
            changes = await request.json()
            with state.lock:
                for key, value in changes.items():
                    if not hasattr(state.config, key):
                        return JSONResponse({"message": f"unknown {key}"}, status_code=400)
                    setattr(state.config, key, value)
        return JSONResponse(vars(state.config))

    async def clock(request: Request) -> Response:
        state.advance_clock(float((await request.json()).get("advance_seconds", 0)))
        return JSONResponse({"now": state.now()})

    return [
        Route("/_test/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/_test/requests", requests, methods=["GET", "DELETE"]),
        Route("/_test/config", config, methods=["GET", "PATCH"]),
        Route("/_test/clock", clock, methods=["POST"]),
    ]


def create_app(state: GiteaState) -> Starlette:
    """The whole fake server: Gitea API under /api/v1 plus the /_test control endpoints."""
    return Starlette(routes=[*control_routes(state), Mount(API_PREFIX, app=GiteaAsgi(state))])
