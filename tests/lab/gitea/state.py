"""In-memory model of the slice of Gitea 1.26 that the sync service touches.

The HTTP layer (`app.py`) holds `GiteaState.lock` for the whole of each request, so a request
is atomic; tests run in another thread and use the helper methods below, which take the same
lock and hand back deep copies, so a test never sees a half-applied request.

Besides the data, the state carries the test controls: server settings (`config`), a clock
that tests can move forward, fault injection rules and the request log.
"""

from __future__ import annotations

import copy
import itertools
import re
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

FaultKind = Literal[
    "error", "lost_response", "drop", "drop_before", "rate_limit", "delay", "status"
]
FAULT_KINDS: frozenset[str] = frozenset(
    {"error", "lost_response", "drop", "drop_before", "rate_limit", "delay", "status"}
)
MAX_RECORDED_REQUESTS = 10_000

READ, WRITE, ADMIN = 1, 2, 3
"""Access modes, as Gitea's `perm.AccessMode` (0 = no access, which the API shows as 404)."""


class StateError(LookupError):
    """A test helper was asked for something that does not exist (a bug in the test)."""


@dataclass
class ServerConfig:
    """Knobs a real Gitea admin could turn (or that model its background machinery).

    `utc_offset` defaults to "+02:00" on purpose: real servers render timestamps in their own
    zone, and a client that assumes "Z" should fail here rather than in production. Use "Z"
    (or "+00:00") for a UTC server.
    """

    version: str = "1.26.3"
    utc_offset: str = "+02:00"
    search_index_lag_seconds: float = 0.0
    default_paging_num: int = 30
    max_response_items: int = 50
    ui_issue_paging_num: int = 20
    disable_query_auth_token: bool = False


@dataclass
class Token:
    """A personal access token; `scopes=None` means every scope (like a password login)."""

    value: str
    user_id: int
    scopes: list[str] | None = None

    @property
    def public_only(self) -> bool:
        """`public-only` tokens see private repositories as missing."""
        return self.scopes is not None and "public-only" in self.scopes


@dataclass
class User:
    """A Gitea account. Organisations are users too (as in Gitea), with `is_org=True`."""

    id: int
    login: str
    created_unix: int
    full_name: str = ""
    email: str = ""
    password: str | None = None
    is_admin: bool = False
    is_org: bool = False
    member_ids: set[int] = field(default_factory=set)
    description: str = ""
    website: str = ""
    location: str = ""


Org = User


@dataclass
class Repo:
    """A repository; `next_index` is the issue/PR counter, which only ever goes up."""

    id: int
    owner_id: int
    name: str
    created_unix: int
    updated_unix: int
    description: str = ""
    private: bool = False
    archived: bool = False
    archived_unix: int = 0
    has_issues: bool = True
    has_pull_requests: bool = True
    default_branch: str = "main"
    collaborators: dict[int, int] = field(default_factory=dict)
    next_index: int = 1


@dataclass
class Label:
    """A repo label (`repo_id` set) or an org label (`org_id` set); ids are global."""

    id: int
    name: str
    color: str  # stored like Gitea: "#rrggbb"
    description: str = ""
    exclusive: bool = False
    is_archived: bool = False
    repo_id: int | None = None
    org_id: int | None = None

    @property
    def exclusive_scope(self) -> str:
        """Scope of an exclusive "scope/name" label; "" when the label is not scoped."""
        if not self.exclusive or "/" not in self.name:
            return ""
        return self.name[: self.name.rindex("/")]


@dataclass
class Comment:
    """A user comment (timeline events are not modelled: the API does not list them)."""

    id: int
    issue_id: int
    poster_id: int
    body: str
    created_unix: int
    updated_unix: int


@dataclass
class IndexDoc:
    """One snapshot of an issue's text as the asynchronous search indexer will know it."""

    visible_from: float
    text: str


@dataclass
class Issue:
    """An issue or pull request (`is_pull`); `number` is per repo, `id` is global."""

    id: int
    repo_id: int
    number: int
    poster_id: int
    title: str
    body: str
    created_unix: int
    updated_unix: int
    state: str = "open"
    is_pull: bool = False
    ref: str = ""
    label_ids: list[int] = field(default_factory=list)
    assignee_ids: list[int] = field(default_factory=list)
    closed_unix: int | None = None
    due_unix: int | None = None
    is_locked: bool = False
    content_version: int = 0
    comments: list[Comment] = field(default_factory=list)
    index_docs: list[IndexDoc] = field(default_factory=list)

    @property
    def searchable_text(self) -> str:
        """What the issue indexer stores: title, body and comment texts."""
        return "\n".join([self.title, self.body, *(c.body for c in self.comments)])


@dataclass
class Fault:
    """A rule that makes matching requests misbehave, `times` times (None = until cleared)."""

    id: int
    method: str
    path_regex: str
    kind: str
    times: int | None = 1
    params: dict[str, Any] = field(default_factory=dict)
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        """Method is compared case-insensitively ("*" = any); the regex is searched in the path."""
        if self.method != "*" and self.method.upper() != method.upper():
            return False
        return re.search(self.path_regex, path) is not None

    def as_dict(self) -> dict[str, Any]:
        """JSON form used by the `/_test/faults` control endpoint."""
        return {
            "id": self.id,
            "method": self.method,
            "path_regex": self.path_regex,
            "kind": self.kind,
            "times": self.times,
            "params": dict(self.params),
            "fired": self.fired,
        }


@dataclass
class RecordedRequest:
    """One API request as received, for tests to inspect (credentials removed)."""

    seq: int
    time: float
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    body_text: str | None
    user: str | None = None
    status: int | None = None
    fault: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON form used by `GET /_test/requests`."""
        return {
            "seq": self.seq,
            "time": self.time,
            "method": self.method,
            "path": self.path,
            "query": dict(self.query),
            "headers": dict(self.headers),
            "json": self.json,
            "body_text": self.body_text,
            "user": self.user,
            "status": self.status,
            "fault": self.fault,
        }


# --- Gitea's value rules, shared by the HTTP layer and the seeding helpers -----------------

_COLOR_RE = re.compile(r"^#(?:[0-9a-f]{3}|[0-9a-f]{6})$")


class InvalidColorError(ValueError):
    """Raised for a label colour that Gitea's `NormalizeColor` rejects."""


def normalize_color(color: str) -> str:
    """Gitea's NormalizeColor: trim, lower-case, add '#', accept 3 or 6 hex digits.

    Returns the stored form "#rrggbb"; the API shows it without the '#'.
    """
    value = color.strip().lower()
    if not value.startswith("#"):
        value = "#" + value
    if not _COLOR_RE.match(value):
        raise InvalidColorError(f"invalid color: {value}")
    if len(value) == 4:
        value = "#" + "".join(ch * 2 for ch in value[1:])
    return value


_GO_SPACE_EXCLUDED = frozenset("\x1c\x1d\x1e\x1f")


def go_trim_space(text: str) -> str:
    """strings.TrimSpace: like str.strip() minus the ASCII separators Go does not call space."""

    def is_space(ch: str) -> bool:
        return ch.isspace() and ch not in _GO_SPACE_EXCLUDED

    start, end = 0, len(text)
    while start < end and is_space(text[start]):
        start += 1
    while end > start and is_space(text[end - 1]):
        end -= 1
    return text[start:end]


def _guess_display_width(ch: str) -> int:
    """Gitea's ellipsis width guess: Latin-1 and marks/format/space count 1, others 2."""
    if ord(ch) <= 255:
        return 1
    if ch == "\u3000":
        return 2
    category = unicodedata.category(ch)
    if category[0] in ("M", "Z") or category in ("Cf", "Cs"):
        return 1
    return 2


def ellipsis_display_string(text: str, limit: int = 255) -> str:
    """util.EllipsisDisplayString: how Gitea shortens titles longer than `limit` UTF-8 bytes.

    The byte length decides *whether* to cut; the guessed display width decides *where*,
    which is why a long title can come back longer than 255 bytes (e.g. many 'é').
    """
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    used, offset, pos, invalid = 0, 0, 0, False
    for i, ch in enumerate(text):
        invalid = invalid or ch == "\ufffd"
        pos = i
        width = _guess_display_width(ch)
        if used + width + 3 > limit:
            break
        used += width
        offset = i + 1
    rest = text[pos:]
    if len(rest.encode("utf-8")) <= 12:
        head = rest[:4]
        if len(head) <= 3 and used + sum(map(_guess_display_width, head)) <= limit:
            return text
    if limit < 3:
        return text[:offset]
    return text[:offset] + ("..." if invalid else "…")


def normalize_title(title: str) -> str:
    """Title as Gitea stores it: trimmed, then shortened to 255 bytes with an ellipsis."""
    return ellipsis_display_string(go_trim_space(title), 255)


# --- the state ------------------------------------------------------------------------------


class GiteaState:
    """Everything the fake Gitea knows, plus the knobs tests use to steer it."""

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        root_url: str | None = None,
        max_requests: int = MAX_RECORDED_REQUESTS,
        **config_overrides: Any,
    ) -> None:
        self.lock = threading.RLock()
        self.config = config or ServerConfig()
        for key, value in config_overrides.items():
            if not hasattr(self.config, key):
                raise TypeError(f"unknown server setting {key!r}")
            setattr(self.config, key, value)
        self.root_url = root_url
        self.clock_offset = 0.0
        self.users: dict[int, User] = {}
        self.tokens: dict[str, Token] = {}
        self.repos: dict[int, Repo] = {}
        self.labels: dict[int, Label] = {}
        self.all_issues: dict[int, Issue] = {}
        self._user_ids = itertools.count(1)
        self._repo_ids = itertools.count(1)
        self._label_ids = itertools.count(1)
        self._issue_ids = itertools.count(1)
        self._comment_ids = itertools.count(1)
        self._fault_ids = itertools.count(1)
        self._request_seq = itertools.count(1)
        self._faults: list[Fault] = []
        self._requests: deque[RecordedRequest] = deque(maxlen=max_requests)

    # -- time ------------------------------------------------------------------------------

    def now_float(self) -> float:
        """Current server time; tests can move it forward with `advance_clock`."""
        return time.time() + self.clock_offset

    def now(self) -> int:
        """Current server time at Gitea's one-second resolution."""
        return int(self.now_float())

    def advance_clock(self, seconds: float) -> None:
        """Move the server clock forward (e.g. to age issues past the indexer lag)."""
        with self.lock:
            self.clock_offset += seconds

    # -- lookups (callers hold the lock) ----------------------------------------------------

    def find_user(self, login: str) -> User | None:
        """Users and orgs by login, case-insensitively like Gitea."""
        wanted = login.lower()
        return next((u for u in self.users.values() if u.login.lower() == wanted), None)

    def find_repo(self, owner: str, name: str) -> Repo | None:
        """Repository by owner and name, case-insensitively like Gitea."""
        account = self.find_user(owner)
        if account is None:
            return None
        wanted = name.lower()
        return next(
            (
                r
                for r in self.repos.values()
                if r.owner_id == account.id and r.name.lower() == wanted
            ),
            None,
        )

    def find_issue(self, repo: Repo, number: int) -> Issue | None:
        """Issue or PR of a repo by its number."""
        return next(
            (i for i in self.all_issues.values() if i.repo_id == repo.id and i.number == number),
            None,
        )

    def repo_issues(self, repo: Repo) -> list[Issue]:
        """All issues and PRs of a repo, by number."""
        found = [i for i in self.all_issues.values() if i.repo_id == repo.id]
        return sorted(found, key=lambda i: i.number)

    def repo_labels(self, repo: Repo) -> list[Label]:
        """The repo's own labels (not the org's)."""
        return [lb for lb in self.labels.values() if lb.repo_id == repo.id]

    def org_labels_of(self, org_id: int) -> list[Label]:
        """Labels defined on an organisation."""
        return [lb for lb in self.labels.values() if lb.org_id == org_id]

    def usable_labels(self, repo: Repo) -> list[Label]:
        """Labels an issue of `repo` may carry: its own plus its owning org's."""
        owner = self.users[repo.owner_id]
        org_labels = self.org_labels_of(owner.id) if owner.is_org else []
        return self.repo_labels(repo) + org_labels

    def access_mode(self, user: User | None, repo: Repo, token: Token | None = None) -> int:
        """Gitea's access mode for `user` on `repo`: 0 (looks missing), READ, WRITE or ADMIN."""
        if token is not None and token.public_only and repo.private:
            return 0
        mode = 0 if repo.private else READ
        if user is None:
            return mode
        owner = self.users[repo.owner_id]
        if user.is_admin or user.id == owner.id:
            return ADMIN
        if owner.is_org and user.id in owner.member_ids:
            mode = max(mode, WRITE)
        return max(mode, repo.collaborators.get(user.id, 0))

    def user_repos(self, user: User) -> list[Repo]:
        """Repositories owned by a user or org."""
        return [r for r in self.repos.values() if r.owner_id == user.id]

    # -- mutations used by the HTTP layer and the helpers (callers hold the lock) -----------

    def new_label(self, name: str, color: str, **fields: Any) -> Label:
        """Insert a label; duplicates are allowed, as in Gitea (no unique index)."""
        label = Label(id=next(self._label_ids), name=name, color=color, **fields)
        self.labels[label.id] = label
        return label

    def new_issue(self, repo: Repo, poster: User, title: str, body: str, **fields: Any) -> Issue:
        """Insert an issue/PR with the next number of the repo's shared counter."""
        now = fields.pop("created_unix", None) or self.now()
        issue = Issue(
            id=next(self._issue_ids),
            repo_id=repo.id,
            number=repo.next_index,
            poster_id=poster.id,
            title=title,
            body=body,
            created_unix=now,
            updated_unix=fields.pop("updated_unix", None) or now,
            **fields,
        )
        repo.next_index += 1
        self.all_issues[issue.id] = issue
        self.reindex(issue)
        return issue

    def new_comment(self, issue: Issue, poster: User, body: str) -> Comment:
        """Append a user comment; bumps the issue's `updated_at` and re-indexes it."""
        now = self.now()
        comment = Comment(next(self._comment_ids), issue.id, poster.id, body, now, now)
        issue.comments.append(comment)
        issue.updated_unix = now
        self.reindex(issue)
        return comment

    def set_issue_state(self, issue: Issue, new_state: str) -> bool:
        """Close or reopen; `closed_at` is set on close and cleared on reopen. True if changed."""
        if issue.state == new_state:
            return False
        issue.state = new_state
        issue.closed_unix = self.now() if new_state == "closed" else None
        return True

    def attach_labels(self, issue: Issue, labels: Iterable[Label]) -> None:
        """Add labels; an exclusive scoped label evicts others with the same scope."""
        for label in labels:
            if label.id in issue.label_ids:
                continue
            scope = label.exclusive_scope
            if scope:
                issue.label_ids = [
                    lid for lid in issue.label_ids if self.labels[lid].exclusive_scope != scope
                ]
            issue.label_ids.append(label.id)

    def reindex(self, issue: Issue, *, immediately: bool = False) -> None:
        """Queue the issue's current text for the (lagging) search indexer."""
        lag = 0.0 if immediately else self.config.search_index_lag_seconds
        issue.index_docs.append(IndexDoc(self.now_float() + lag, issue.searchable_text))

    def indexed_text(self, issue: Issue) -> str | None:
        """What the indexer currently knows of the issue (None: not indexed yet)."""
        now = self.now_float()
        visible = [d for d in issue.index_docs if d.visible_from <= now]
        return visible[-1].text if visible else None

    # -- seeding helpers for tests ----------------------------------------------------------

    def add_user(
        self,
        login: str,
        token: str | None = None,
        scopes: list[str] | None = None,
        *,
        password: str | None = None,
        is_admin: bool = False,
        full_name: str = "",
    ) -> User:
        """Create a user (and optionally a token for it); returns a snapshot."""
        with self.lock:
            if self.find_user(login) is not None:
                raise ValueError(f"login {login!r} already exists")
            user = User(
                id=next(self._user_ids),
                login=login,
                created_unix=self.now(),
                full_name=full_name,
                email=f"{login}@example.com",
                password=password,
                is_admin=is_admin,
            )
            self.users[user.id] = user
            if token is not None:
                self.add_token(login, token, scopes)
            return copy.deepcopy(user)

    def add_token(self, login: str, token: str, scopes: list[str] | None = None) -> Token:
        """Give an existing user another token (e.g. one with fewer scopes)."""
        with self.lock:
            user = self._user(login)
            if token in self.tokens:
                raise ValueError("token already exists")
            self.tokens[token] = Token(token, user.id, None if scopes is None else list(scopes))
            return copy.deepcopy(self.tokens[token])

    def add_org(self, name: str, members: Iterable[str] = ()) -> Org:
        """Create an organisation; members get write access to all its repos."""
        with self.lock:
            if self.find_user(name) is not None:
                raise ValueError(f"name {name!r} already exists")
            org = User(id=next(self._user_ids), login=name, created_unix=self.now(), is_org=True)
            org.email = f"{name}@example.com"
            self.users[org.id] = org
            for login in members:
                org.member_ids.add(self._user(login).id)
            return copy.deepcopy(org)

    def add_org_member(self, org: str, login: str) -> None:
        """Make a user a member (writer) of an organisation."""
        with self.lock:
            self._org(org).member_ids.add(self._user(login).id)

    def add_repo(self, owner: str, name: str, **flags: Any) -> Repo:
        """Create a repo; flags are Repo fields (private, archived, has_issues, ...)."""
        with self.lock:
            account = self._user(owner)
            if self.find_repo(owner, name) is not None:
                raise ValueError(f"repo {owner}/{name} already exists")
            now = self.now()
            repo = Repo(
                id=next(self._repo_ids),
                owner_id=account.id,
                name=name,
                created_unix=now,
                updated_unix=now,
            )
            self.repos[repo.id] = repo
            self._apply_repo_flags(repo, flags)
            return copy.deepcopy(repo)

    def update_repo(self, owner: str, name: str, **flags: Any) -> Repo:
        """Change repo flags, e.g. `update_repo(o, r, archived=True)`."""
        with self.lock:
            repo = self._repo(owner, name)
            self._apply_repo_flags(repo, flags)
            return copy.deepcopy(repo)

    def add_collaborator(self, owner: str, repo: str, login: str, *, write: bool = True) -> None:
        """Give a user read or write access to a repo."""
        with self.lock:
            self._repo(owner, repo).collaborators[self._user(login).id] = WRITE if write else READ

    def add_label(
        self, owner: str, repo: str, name: str, color: str = "ee0701", **fields: Any
    ) -> Label:
        """Create a repo label directly (colour normalised like the API does)."""
        with self.lock:
            target = self._repo(owner, repo)
            label = self.new_label(name, normalize_color(color), repo_id=target.id, **fields)
            return copy.deepcopy(label)

    def add_org_label(self, org: str, name: str, color: str = "ee0701", **fields: Any) -> Label:
        """Create an organisation label directly."""
        with self.lock:
            target = self._org(org)
            label = self.new_label(name, normalize_color(color), org_id=target.id, **fields)
            return copy.deepcopy(label)

    def add_issue(
        self,
        owner: str,
        repo: str,
        title: str,
        body: str = "",
        *,
        poster: str | None = None,
        labels: Iterable[str | int] = (),
        closed: bool = False,
        created_unix: int | None = None,
        updated_unix: int | None = None,
        indexed: bool = True,
        is_pull: bool = False,
    ) -> Issue:
        """Seed an issue without HTTP (no title/label rules applied; labels by name or id).

        Seeded issues are searchable at once (`indexed=True`) since they model old data.
        """
        with self.lock:
            target = self._repo(owner, repo)
            author = self._user(poster) if poster else self.users[target.owner_id]
            issue = self.new_issue(
                target,
                author,
                title,
                body,
                is_pull=is_pull,
                created_unix=created_unix,
                updated_unix=updated_unix,
            )
            self.attach_labels(issue, [self._usable_label(target, ref) for ref in labels])
            if closed:
                self.set_issue_state(issue, "closed")
            if indexed:
                issue.index_docs.clear()
                self.reindex(issue, immediately=True)
            return copy.deepcopy(issue)

    def add_pull(self, owner: str, repo: str, title: str, **kwargs: Any) -> Issue:
        """Seed a pull request; it takes a number from the counter shared with issues."""
        return self.add_issue(owner, repo, title, is_pull=True, **kwargs)

    def add_comment(
        self, owner: str, repo: str, number: int, body: str, *, poster: str | None = None
    ) -> Comment:
        """Seed a comment on an issue."""
        with self.lock:
            target = self._repo(owner, repo)
            issue = self._issue(target, number)
            author = self._user(poster) if poster else self.users[target.owner_id]
            return copy.deepcopy(self.new_comment(issue, author, body))

    def delete_issue(self, owner: str, repo: str, number: int) -> None:
        """Delete an issue (its number is never handed out again, as in Gitea)."""
        with self.lock:
            issue = self._issue(self._repo(owner, repo), number)
            del self.all_issues[issue.id]

    # -- read helpers for tests (snapshots) -------------------------------------------------

    def issues(self, owner: str, repo: str) -> list[Issue]:
        """Snapshot of a repo's issues and PRs, by number."""
        with self.lock:
            return copy.deepcopy(self.repo_issues(self._repo(owner, repo)))

    def issue(self, owner: str, repo: str, number: int) -> Issue | None:
        """Snapshot of one issue, or None."""
        with self.lock:
            return copy.deepcopy(self.find_issue(self._repo(owner, repo), number))

    def issue_label_names(self, owner: str, repo: str, number: int) -> list[str]:
        """Names of the labels on an issue, sorted."""
        with self.lock:
            issue = self._issue(self._repo(owner, repo), number)
            return sorted(self.labels[lid].name for lid in issue.label_ids)

    def labels_of(self, owner: str, repo: str) -> list[Label]:
        """Snapshot of a repo's own labels, by id."""
        with self.lock:
            return copy.deepcopy(self.repo_labels(self._repo(owner, repo)))

    def org_labels(self, org: str) -> list[Label]:
        """Snapshot of an organisation's labels, by id."""
        with self.lock:
            return copy.deepcopy(self.org_labels_of(self._org(org).id))

    def comments(self, owner: str, repo: str, number: int) -> list[Comment]:
        """Snapshot of an issue's comments, oldest first."""
        with self.lock:
            return copy.deepcopy(self._issue(self._repo(owner, repo), number).comments)

    def repo(self, owner: str, name: str) -> Repo:
        """Snapshot of a repository."""
        with self.lock:
            return copy.deepcopy(self._repo(owner, name))

    # -- faults -----------------------------------------------------------------------------

    def add_fault(
        self,
        method: str,
        path_regex: str,
        kind: str,
        times: int | None = 1,
        **params: Any,
    ) -> Fault:
        """Make the next `times` requests matching method + path regex misbehave.

        kinds: error (status=500), lost_response, drop, drop_before, rate_limit
        (retry_after=1), delay (seconds=1.0), status (status=413). See README.md.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None (until cleared)")
        re.compile(path_regex)
        with self.lock:
            fault = Fault(next(self._fault_ids), method, path_regex, kind, times, dict(params))
            self._faults.append(fault)
            return copy.deepcopy(fault)

    def take_fault(self, method: str, path: str) -> Fault | None:
        """Consume one firing of the first matching fault (removed once used up)."""
        with self.lock:
            for fault in self._faults:
                if not fault.matches(method, path):
                    continue
                fault.fired += 1
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                return copy.deepcopy(fault)
            return None

    def clear_faults(self) -> None:
        """Remove every pending fault."""
        with self.lock:
            self._faults.clear()

    @property
    def faults(self) -> list[Fault]:
        """Snapshot of the pending faults."""
        with self.lock:
            return copy.deepcopy(self._faults)

    # -- request log ------------------------------------------------------------------------

    def record_request(self, **fields: Any) -> RecordedRequest:
        """Append to the request log (oldest entries drop off past the cap)."""
        with self.lock:
            entry = RecordedRequest(seq=next(self._request_seq), time=time.time(), **fields)
            self._requests.append(entry)
            return entry

    @property
    def requests(self) -> list[RecordedRequest]:
        """Snapshot of the request log, oldest first."""
        with self.lock:
            return copy.deepcopy(list(self._requests))

    def clear_requests(self) -> None:
        """Forget all recorded requests."""
        with self.lock:
            self._requests.clear()

    # -- internals --------------------------------------------------------------------------

    def _user(self, login: str) -> User:
        user = self.find_user(login)
        if user is None:
            raise StateError(f"no user {login!r}")
        return user

    def _org(self, name: str) -> User:
        org = self._user(name)
        if not org.is_org:
            raise StateError(f"{name!r} is a user, not an organisation")
        return org

    def _repo(self, owner: str, name: str) -> Repo:
        repo = self.find_repo(owner, name)
        if repo is None:
            raise StateError(f"no repo {owner}/{name}")
        return repo

    def _issue(self, repo: Repo, number: int) -> Issue:
        issue = self.find_issue(repo, number)
        if issue is None:
            raise StateError(f"no issue #{number} in repo id {repo.id}")
        return issue

    def _usable_label(self, repo: Repo, ref: str | int) -> Label:
        for label in self.usable_labels(repo):
            if label.id == ref or label.name == ref:
                return label
        raise StateError(f"no label {ref!r} usable in repo id {repo.id}")

    def _apply_repo_flags(self, repo: Repo, flags: dict[str, Any]) -> None:
        for key, value in flags.items():
            if key in ("id", "owner_id", "name") or not hasattr(repo, key):
                raise TypeError(f"unknown repo flag {key!r}")
            setattr(repo, key, value)
        if flags.get("archived") and not repo.archived_unix:
            repo.archived_unix = self.now()
