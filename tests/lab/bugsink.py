"""Run a real Bugsink on 127.0.0.1 for integration tests and demos.

Bugsink pins its dependencies tightly, so it is installed into its own virtualenv per version
(``.cache/bugsink/venv-<version>``), never into the project venv. A migrated data dir (the
"template": conf, SECRET_KEY, SQLite DBs, full-access token) is built once per version; each
server copies it, so a start takes ~0.6 s instead of ~6 s of migrations plus start.

Only the stdlib and httpx are used here: the Bugsink venv runs as subprocesses
(``gunicorn``, ``bugsink-manage``, ``send_events.py``).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

import httpx

DEFAULT_VERSION = "2.6.2"
REPO_ROOT = Path(__file__).resolve().parents[2]
SEND_EVENTS_SCRIPT = Path(__file__).resolve().with_name("send_events.py")
API_PREFIX = "/api/canonical/0/"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
_COMPLETE = ".complete"
_TEMPLATE_PORT = 9  # placeholder; every server rewrites the conf with its own port


class BugsinkLabError(RuntimeError):
    """The lab itself failed (install, migrate, start, a manage command, the event sender)."""


class BugsinkApiError(RuntimeError):
    """Bugsink answered an API call with an error status; keeps status and body for asserts."""

    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self.body = response.text
        self.content_type = response.headers.get("content-type", "")
        request = response.request
        super().__init__(f"{request.method} {request.url} -> {self.status_code}: {self.body[:500]}")


def _log(message: str) -> None:
    """Progress goes to stderr: pytest shows it with -s, and installs take tens of seconds."""
    print(f"[bugsink-lab] {message}", file=sys.stderr, flush=True)


def lab_dir() -> Path:
    """Where venvs and templates live; BUGSINK_LAB_DIR overrides ``<repo>/.cache/bugsink``."""
    override = os.environ.get("BUGSINK_LAB_DIR")
    path = Path(override) if override else REPO_ROOT / ".cache" / "bugsink"
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """Exclusive flock so parallel pytest processes build a venv/template only once."""
    lock_path = lab_dir() / f"{name}.lock"
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing output; on failure raise with its stderr so the cause is visible."""
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    if result.returncode != 0:
        raise BugsinkLabError(
            f"command failed ({result.returncode}): {' '.join(cmd)}\n"
            f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"
        )
    return result


def _reset_dir(path: Path) -> None:
    """Remove a half-built venv/template (its marker is missing) before rebuilding it."""
    if path.exists():
        _log(f"removing incomplete {path}")
        shutil.rmtree(path)


# --------------------------------------------------------------------------------------- venv


def venv_path(version: str = DEFAULT_VERSION) -> Path:
    """The venv directory for one Bugsink version (may not exist yet)."""
    return lab_dir() / f"venv-{version}"


def ensure_venv(version: str = DEFAULT_VERSION) -> Path:
    """Create ``venv-<version>`` with ``pip install bugsink==<version>`` unless already complete.

    The marker file is written last, so an interrupted install is detected and rebuilt.
    """
    venv = venv_path(version)
    if (venv / _COMPLETE).exists():
        return venv
    with _locked(f"venv-{version}"):
        if (venv / _COMPLETE).exists():
            return venv
        _reset_dir(venv)
        _build_venv(venv, version)
        (venv / _COMPLETE).write_text(version + "\n")
    return venv


def _build_venv(venv: Path, version: str) -> None:
    """Install Bugsink (and with it gunicorn and sentry-sdk) and check the installed version."""
    started = time.monotonic()
    _log(f"creating {venv} (pip install bugsink=={version}, ~15 s)")
    _run([sys.executable, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    _run([*pip, "--disable-pip-version-check", f"bugsink=={version}"], env=_clean_env())
    shown = _run([str(venv / "bin" / "bugsink-show-version")], env=_clean_env()).stdout.strip()
    if shown != version:
        raise BugsinkLabError(f"bugsink-show-version printed {shown!r}, expected {version!r}")
    _log(f"venv for bugsink {version} ready in {time.monotonic() - started:.1f} s")


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for Bugsink-venv processes: nothing of the project venv, loopback unproxied."""
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
    for key in ("NO_PROXY", "no_proxy"):
        env[key] = ",".join(filter(None, ["127.0.0.1,localhost", os.environ.get(key, "")]))
    env.update(extra or {})
    return env


_DROPPED_ENV = frozenset(
    {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE", "SENTRY_DSN"}
)


# --------------------------------------------------------------------------------------- conf

_CONF_TEMPLATE = """\
# Generated by tests/lab/bugsink.py for local tests only: rewritten on every start.
import os

from bugsink.settings.default import *  # noqa: F403

_DATA = {data_dir!r}
SECRET_KEY = open(os.path.join(_DATA, "secret_key")).read().strip()
DEBUG = False
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

# Absolute paths: the defaults are relative to the CWD.
DATABASES["default"]["NAME"] = os.path.join(_DATA, "db.sqlite3")
DATABASES["default"]["TEST"]["NAME"] = os.path.join(_DATA, "test.sqlite3")
DATABASES["snappea"]["NAME"] = os.path.join(_DATA, "snappea.sqlite3")

SNAPPEA = {{
    # Eager: events are digested inside the envelope POST, so no snappea worker is needed and
    # an issue exists as soon as the sender's request has returned.
    "TASK_ALWAYS_EAGER": True,
    "NUM_WORKERS": 1,
    "PID_FILE": None,
    "WAKEUP_CALLS_DIR": os.path.join(_DATA, "snappea-wakeup"),  # default is shared in /tmp
}}

EMAIL_BACKEND = "django.core.mail.backends.dummy.EmailBackend"

BUGSINK = {{
    "BASE_URL": {base_url!r},  # used for DSNs and links
    "SITE_TITLE": "Bugsink (lab)",
    "SINGLE_USER": False,
    "USER_REGISTRATION": "CB_NOBODY",
    "PHONEHOME": False,  # the default True POSTs to bugsink.com (inline, in eager mode)
    "INGEST_STORE_BASE_DIR": os.path.join(_DATA, "ingestion"),  # default is shared in /tmp
    # Webhooks to 127.0.0.1 are blocked by the SSRF guard unless this is off (the allow-list
    # does not override it). Unknown to releases before 2.1, which simply ignore it.
    "ALERTS_WEBHOOK_DENY_NON_GLOBAL": False,
}}
"""


def _write_conf(data_dir: Path, port: int) -> None:
    """(Re)write ``bugsink_conf.py`` with this data dir's absolute paths and BASE_URL/port."""
    text = _CONF_TEMPLATE.format(data_dir=str(data_dir), base_url=f"http://127.0.0.1:{port}")
    (data_dir / "bugsink_conf.py").write_text(text)


def _instance_env(data_dir: Path) -> dict[str, str]:
    """Environment for gunicorn/bugsink-manage of one instance: its conf on the import path."""
    return _clean_env({"DJANGO_SETTINGS_MODULE": "bugsink_conf", "PYTHONPATH": str(data_dir)})


def _manage(venv: Path, data_dir: Path, *args: str) -> str:
    """Run ``bugsink-manage`` against one data dir (CWD and conf) and return its stdout."""
    cmd = [str(venv / "bin" / "bugsink-manage"), *args]
    return _run(cmd, cwd=data_dir, env=_instance_env(data_dir)).stdout


# ----------------------------------------------------------------------------------- template


def template_path(version: str = DEFAULT_VERSION) -> Path:
    """The migrated data-dir template for one Bugsink version (may not exist yet)."""
    return lab_dir() / f"template-{version}"


def ensure_template(version: str = DEFAULT_VERSION) -> Path:
    """Build a migrated data dir (conf, secret_key, both DBs, full-access token) once per version.

    Migrations take ~5 s; copying the result makes every later start take ~0.6 s.
    """
    venv = ensure_venv(version)
    template = template_path(version)
    if (template / _COMPLETE).exists():
        return template
    with _locked(f"template-{version}"):
        if (template / _COMPLETE).exists():
            return template
        _reset_dir(template)
        _build_template(venv, template, version)
        (template / _COMPLETE).write_text(version + "\n")
    return template


def _build_template(venv: Path, template: Path, version: str) -> None:
    """Migrate both databases and create the token (``create_auth_token``: full access in 2.6)."""
    started = time.monotonic()
    _log(f"building data-dir template {template} (migrations, ~6 s)")
    template.mkdir(parents=True)
    (template / "secret_key").write_text(uuid.uuid4().hex + uuid.uuid4().hex + "\n")
    _write_conf(template, _TEMPLATE_PORT)
    _manage(venv, template, "migrate", "snappea", "--database=snappea", "--no-input")
    _manage(venv, template, "migrate", "--no-input")
    token = _manage(venv, template, "create_auth_token").strip().splitlines()[-1]
    (template / "token").write_text(token + "\n")
    _log(f"template for bugsink {version} ready in {time.monotonic() - started:.1f} s")


def _copy_template(template: Path, data_dir: Path) -> None:
    """Copy DBs, secret and token (not the marker, conf or caches) into a fresh data dir."""
    skip = shutil.ignore_patterns(_COMPLETE, "bugsink_conf.py", "__pycache__", "*.log")
    shutil.copytree(template, data_dir, ignore=skip, dirs_exist_ok=True)


# ------------------------------------------------------------------------------------ process


def _free_port() -> int:
    """Ask the kernel for a free loopback port (tiny race; start retries when it is lost)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_in_use(port: int) -> bool:
    """True when something accepts connections on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _gunicorn_has_control_socket(venv: Path) -> bool:
    """gunicorn >= 26 creates ~/.gunicorn/gunicorn.ctl (shared!) unless --no-control-socket.

    Older Bugsink releases pin gunicorn 23, which lacks the flag; reading its config module is
    instant, unlike ``gunicorn --help``.
    """
    configs = list(venv.glob("lib/python*/site-packages/gunicorn/config.py"))
    return bool(configs) and "no-control-socket" in configs[0].read_text()


def _gunicorn_cmd(venv: Path, data_dir: Path, port: int, workers: int) -> list[str]:
    """The gunicorn command line for one instance (access log to gunicorn.log for debugging)."""
    cmd = [str(venv / "bin" / "gunicorn"), "--chdir", str(data_dir)]
    cmd += ["--bind", f"127.0.0.1:{port}", "--workers", str(workers)]
    cmd += ["--timeout", "60", "--graceful-timeout", "5", "--access-logfile", "-"]
    cmd += ["--pid", str(data_dir / "gunicorn.pid")]
    if _gunicorn_has_control_socket(venv):
        cmd.append("--no-control-socket")
    return [*cmd, "bugsink.wsgi"]


def _spawn_gunicorn(venv: Path, data_dir: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    """Start gunicorn in its own session (setsid), so terminal signals to pytest don't hit it
    and the whole process group can be killed as a last resort."""
    log = (data_dir / "gunicorn.log").open("ab")
    with log:
        return subprocess.Popen(
            _gunicorn_cmd(venv, data_dir, port, workers),
            cwd=data_dir,
            env=_instance_env(data_dir),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _log_tail(data_dir: Path, lines: int = 30) -> str:
    """Last lines of gunicorn.log, for error messages."""
    path = data_dir / "gunicorn.log"
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def _wait_ready(proc: subprocess.Popen[bytes], data_dir: Path, port: int) -> None:
    """Wait until *our* gunicorn listens (its log says so) and ``/health/ready`` answers 200.

    Checking the log first prevents a race where another server on a reused port answers.
    """
    deadline = time.monotonic() + READY_TIMEOUT
    listening = f"Listening at: http://127.0.0.1:{port} "
    with httpx.Client(trust_env=False, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BugsinkLabError(
                    f"gunicorn exited ({proc.returncode}) during start:\n{_log_tail(data_dir)}"
                )
            if listening in _log_tail(data_dir, 200) and _health_ok(client, port):
                return
            time.sleep(0.05)
    _terminate(proc)
    raise BugsinkLabError(f"not ready after {READY_TIMEOUT} s:\n{_log_tail(data_dir)}")


def _health_ok(client: httpx.Client, port: int) -> bool:
    """One ``/health/ready`` probe (no DB, no ALLOWED_HOSTS check)."""
    try:
        response = client.get(f"http://127.0.0.1:{port}/health/ready")
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def _terminate(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM the gunicorn master (graceful: it stops its workers first), SIGKILL if it hangs."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _log(f"gunicorn {proc.pid} ignored SIGTERM for {timeout} s; SIGKILL to its group")
        # Not reaped yet, so the pid (= group id: own session) cannot have been reused.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# ---------------------------------------------------------------------------------------- API


@dataclass(frozen=True)
class BugsinkProject:
    """A project as tests need it: the int id for API filters and the DSN for senders."""

    id: int
    name: str
    slug: str
    dsn: str


class BugsinkApi:
    """Small sync client for ``/api/canonical/0/`` with one Bearer token.

    Errors raise :class:`BugsinkApiError` (status and body kept), so tests can assert on 403s.
    """

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token
        self._default_team: str | None = None
        self.http = httpx.Client(
            base_url=url + API_PREFIX,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            trust_env=False,  # loopback only: never through a proxy
            timeout=60.0,
        )

    def with_token(self, token: str) -> BugsinkApi:
        """Another client on the same server, e.g. with a scoped token (close it when done)."""
        return BugsinkApi(self.url, token)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API call; returns the decoded JSON (None for an empty body), raises on >= 400."""
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise BugsinkApiError(response)
        return response.json() if response.content else None

    def _all_pages(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Follow the absolute cursor ``next`` links (pages hold 250 items)."""
        page = self.call("GET", path, params=params)
        results: list[dict[str, Any]] = list(page["results"])
        while page.get("next"):
            page = self.call("GET", page["next"])
            results.extend(page["results"])
        return results

    def schema(self) -> dict[str, Any]:
        """The OpenAPI schema (no auth needed): ``info.version`` and ``paths`` tell features."""
        url = f"{self.url}{API_PREFIX}schema/"
        response = httpx.get(url, params={"format": "json"}, trust_env=False, timeout=60.0)
        if response.status_code >= 400:
            raise BugsinkApiError(response)
        schema: dict[str, Any] = response.json()
        return schema

    def create_team(self, name: str) -> str:
        """Create a team; returns its UUID (teams are needed to create projects)."""
        return str(self.call("POST", "teams/", json={"name": name})["id"])

    def default_team(self) -> str:
        """The team "lab" (found or created once per client) for projects created without one."""
        if self._default_team is None:
            teams = self._all_pages("teams/", {})
            found = [t["id"] for t in teams if t["name"] == "lab"]
            self._default_team = found[0] if found else self.create_team("lab")
        return self._default_team

    def create_project(self, name: str, team: str | None = None) -> BugsinkProject:
        """Create a project and read it back: the create answer has a string id and no DSN."""
        body = {"name": name, "team": team or self.default_team()}
        created = self.call("POST", "projects/", json=body)
        return self.get_project(int(created["id"]))

    def get_project(self, project_id: int) -> BugsinkProject:
        """One project with its DSN (built by Bugsink from BASE_URL)."""
        data = self.call("GET", f"projects/{project_id}/")
        return BugsinkProject(
            id=int(data["id"]), name=data["name"], slug=data["slug"], dsn=data["dsn"]
        )

    def list_issues(self, project_id: int, state: str | None = None) -> list[dict[str, Any]]:
        """All issues of a project, all pages. ``state`` is ignored by servers before 2.6.2."""
        params: dict[str, Any] = {"project": project_id}
        if state is not None:
            params["state"] = state
        return self._all_pages("issues/", params)

    def get_issue(self, issue_id: str) -> dict[str, Any]:
        """One issue by UUID or friendly id."""
        issue: dict[str, Any] = self.call("GET", f"issues/{issue_id}/")
        return issue

    def _action(self, issue_id: str, action: str) -> dict[str, Any]:
        """POST an issue action; 2.6.2 answers with the updated issue."""
        issue: dict[str, Any] = self.call("POST", f"issues/{issue_id}/{action}/", json={})
        return issue

    def resolve(self, issue_id: str) -> dict[str, Any]:
        """Resolve unconditionally (2.2.1+); a second resolve answers 400."""
        return self._action(issue_id, "resolve")

    def reopen(self, issue_id: str) -> dict[str, Any]:
        """Reopen a resolved issue (2.4.0+)."""
        return self._action(issue_id, "reopen")

    def mute(self, issue_id: str) -> dict[str, Any]:
        """Mute indefinitely (2.2.1+)."""
        return self._action(issue_id, "mute")

    def events(self, issue_id: str) -> list[dict[str, Any]]:
        """All events of an issue (list shape, newest first; no ``data``)."""
        return self._all_pages("events/", {"issue": issue_id})

    def get_event(self, event_id: str) -> dict[str, Any]:
        """One event in detail shape: ``data`` is the raw event as the SDK sent it."""
        event: dict[str, Any] = self.call("GET", f"events/{event_id}/")
        return event


# ------------------------------------------------------------------------------------- server

_SHELL_MARK = "@@bugsink-lab@@"


class BugsinkServer(BugsinkApi):
    """A running gunicorn+Bugsink on 127.0.0.1; also an API client with the full-access token.

    Stop it with :meth:`stop` or by using it as a context manager; an atexit hook stops it too,
    since gunicorn runs in its own session and would otherwise outlive the test run.
    """

    def __init__(
        self,
        *,
        version: str,
        venv: Path,
        data_dir: Path,
        port: int,
        token: str,
        proc: subprocess.Popen[bytes],
        owns_data_dir: bool,
    ) -> None:
        super().__init__(f"http://127.0.0.1:{port}", token)
        self.version = version
        self.venv = venv
        self.data_dir = data_dir
        self.port = port
        self.pid = proc.pid
        self._proc = proc
        self._owns_data_dir = owns_data_dir
        atexit.register(self.stop)

    def __repr__(self) -> str:
        return f"BugsinkServer(version={self.version!r}, url={self.url!r}, pid={self.pid})"

    @property
    def running(self) -> bool:
        """True while the gunicorn master has not exited."""
        return self._proc.poll() is None

    def stop(self) -> None:
        """Stop gunicorn (SIGTERM, then SIGKILL) and remove a temporary data dir.

        Set BUGSINK_LAB_KEEP=1 to keep the data dir (gunicorn.log) for debugging.
        """
        atexit.unregister(self.stop)
        _terminate(self._proc)
        self.close()
        if self._owns_data_dir and not os.environ.get("BUGSINK_LAB_KEEP"):
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def manage(self, *args: str) -> str:
        """Run ``bugsink-manage`` with this instance's conf; returns stdout, raises on failure."""
        return _manage(self.venv, self.data_dir, *args)

    def shell(self, code: str, **params: Any) -> Any:
        """Run Python in ``bugsink-manage shell`` (Django ORM) and return its ``result`` variable.

        ``params`` are JSON-encoded into the code as the dict ``params``; ``result`` must be
        JSON-serialisable. Used for what the API cannot do (webhooks, scoped tokens).
        """
        program = (
            f"import json\nparams = json.loads({json.dumps(params)!r})\nresult = None\n"
            f"{code}\nprint({_SHELL_MARK!r} + json.dumps(result))\n"
        )
        out = self.manage("shell", "-c", program)
        marked = [line for line in out.splitlines() if line.startswith(_SHELL_MARK)]
        if not marked:
            raise BugsinkLabError(f"shell printed no result:\n{out[-2000:]}")
        return json.loads(marked[-1][len(_SHELL_MARK) :])

    def add_webhook(self, project_id: int, url: str, display_name: str = "lab webhook") -> int:
        """Add a custom webhook alert (2.5.1+) to a project; returns the config id.

        There is no API or command for this, so it goes through the ORM, validated by the same
        ``CustomBackendForm`` as the UI (SSRF guard: loopback works because the lab conf sets
        ALERTS_WEBHOOK_DENY_NON_GLOBAL False). Bugsink POSTs the issue JSON plus ``title,
        project_name, url, alert_reason`` (NEW, REGRESSED, UNMUTED) synchronously on digest.
        """
        return int(self.shell(_ADD_WEBHOOK, project_id=project_id, url=url, name=display_name))

    def create_token(self, project_id: int | None = None, **capabilities: bool) -> str:
        """Create an API token via the ORM, e.g. ``create_token(issues_read=True)``.

        Capabilities are AuthToken field names (2.6+: issues_read, events_read, issues_comment,
        issues_triage, issues_delete, releases_read, releases_create, debug_files_upload,
        projects_read, projects_manage, teams_read, teams_manage); unnamed ones are False, so a
        2.6 token without arguments can read nothing. Before 2.6 every token has full access and
        capability arguments fail. ``project_id`` makes a project-bound token.
        """
        params = {"capabilities": capabilities, "project_id": project_id}
        return str(self.shell(_CREATE_TOKEN, **params))


_ADD_WEBHOOK = """
from alerts.models import MessagingServiceConfig
from alerts.service_backends.custom import CustomBackendForm
from projects.models import Project

project = Project.objects.get(id=params["project_id"])
form = CustomBackendForm(data={"webhook_url": params["url"]})
if not form.is_valid():
    raise SystemExit("invalid webhook url: %s" % form.errors.get_json_data())
config = MessagingServiceConfig.objects.create(
    project=project, kind="custom", display_name=params["name"],
    config=json.dumps(form.get_config()))
result = config.id
"""

_CREATE_TOKEN = """
from bsmain.models import AuthToken

fields = {field.name for field in AuthToken._meta.get_fields()}
unknown = sorted(set(params["capabilities"]) - fields)
if unknown:
    raise SystemExit("AuthToken has no fields %s (capabilities exist from 2.6.0)" % unknown)
token = AuthToken(**params["capabilities"])
if "description" in fields:  # 2.0.x has no description
    token.description = "bugsink-lab token"
if params["project_id"] is not None:
    token.is_project_bound = True
    token.project_id = params["project_id"]
token.full_clean()
token.save()
result = token.token
"""


def start_bugsink(
    version: str = DEFAULT_VERSION,
    port: int | None = None,
    workers: int = 1,
    data_dir: Path | str | None = None,
) -> BugsinkServer:
    """Start a Bugsink on 127.0.0.1 from the version's template (~0.6 s once it exists).

    ``port`` None picks a free port. ``data_dir`` None uses a temporary dir that stop()
    removes; a given ``data_dir`` is kept, and if it already holds a database (an earlier
    server's) that one is reused, so a stopped server can be restarted with its data.
    """
    venv = ensure_venv(version)
    template = ensure_template(version)
    owns = data_dir is None
    target = Path(tempfile.mkdtemp(prefix=f"bugsink-{version}-")) if owns else Path(str(data_dir))
    target = target.resolve()
    target.mkdir(parents=True, exist_ok=True)
    _refuse_running(target)
    if not (target / "db.sqlite3").exists():
        _copy_template(template, target)
    try:
        proc, chosen = _start_on_port(venv, target, port, workers)
    except BaseException:
        if owns and not os.environ.get("BUGSINK_LAB_KEEP"):
            shutil.rmtree(target, ignore_errors=True)
        raise
    token = (target / "token").read_text().strip()
    return BugsinkServer(
        version=version,
        venv=venv,
        data_dir=target,
        port=chosen,
        token=token,
        proc=proc,
        owns_data_dir=owns,
    )


def _refuse_running(data_dir: Path) -> None:
    """Two gunicorns on one SQLite data dir would corrupt each other's view: refuse."""
    pid_file = data_dir / "gunicorn.pid"
    if not pid_file.exists():
        return
    try:
        pid = int(pid_file.read_text().strip() or 0)
        if pid:
            os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except (ValueError, ProcessLookupError):
        return
    raise BugsinkLabError(f"a gunicorn (pid {pid}) still runs on {data_dir}")


def _start_on_port(
    venv: Path, data_dir: Path, port: int | None, workers: int
) -> tuple[subprocess.Popen[bytes], int]:
    """Start gunicorn; an auto-picked port that another process grabbed meanwhile is retried."""
    for _attempt in range(3):
        chosen = port or _free_port()
        if _port_in_use(chosen):
            if port is not None:
                raise BugsinkLabError(f"port {port} on 127.0.0.1 is already in use")
            continue
        _write_conf(data_dir, chosen)
        proc = _spawn_gunicorn(venv, data_dir, chosen, workers)
        try:
            _wait_ready(proc, data_dir, chosen)
        except BugsinkLabError:
            _terminate(proc)
            if port is None and "Address already in use" in _log_tail(data_dir):
                continue
            raise
        except BaseException:
            _terminate(proc)
            raise
        return proc, chosen
    raise BugsinkLabError("no free port found for gunicorn after 3 attempts")


# ------------------------------------------------------------------------------------- events


def send_events(
    dsn: str,
    scenarios: list[str],
    *,
    environment: str | None = None,
    release: str | None = None,
    count: int | None = None,
    version: str = DEFAULT_VERSION,
    timeout: float = 600.0,
) -> list[dict[str, Any]]:
    """Send real sentry-sdk events by running ``send_events.py`` with the Bugsink venv's python.

    Returns one dict per captured event (``scenario``, ``event_id``, ...). Raises with the
    sender's stderr when it fails, e.g. when events were not flushed or were dropped.
    """
    python = ensure_venv(version) / "bin" / "python"
    cmd = [str(python), str(SEND_EVENTS_SCRIPT), dsn, *scenarios]
    for flag, value in (("--environment", environment), ("--release", release), ("--count", count)):
        if value is not None:
            cmd += [flag, str(value)]
    result = subprocess.run(
        cmd, capture_output=True, text=True, check=False, timeout=timeout, env=_clean_env()
    )
    if result.returncode != 0:
        raise BugsinkLabError(
            f"send_events.py failed ({result.returncode}) for {scenarios}:\n{result.stderr[-4000:]}"
        )
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def _dsn_parts(dsn: str) -> tuple[str, str, str]:
    """Split ``http://KEY@HOST:PORT/PROJECT`` into (base url, key, project id)."""
    parts = urlsplit(dsn)
    if not parts.username or not parts.hostname:
        raise ValueError(f"not a DSN: {dsn!r}")
    host = f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname
    return f"{parts.scheme}://{host}", parts.username, parts.path.strip("/")


def send_envelope(dsn: str, event: dict[str, Any], *, add_timestamp: bool = True) -> str:
    """POST one event as a raw envelope, as non-Python SDKs do; returns the event id (hex).

    The event is sent as given (no platform/level added); only ``event_id`` and, unless
    ``add_timestamp`` is False, ``timestamp`` are filled in when missing: every real SDK sends
    a timestamp, and 2.0.11/2.2.1 answer 500 (KeyError 'timestamp') without one. Those old
    releases also need ``platform`` (500 KeyError 'platform'); 2.6.2 accepts events without.
    In eager mode the event is digested when this returns.
    """
    base, key, project_id = _dsn_parts(dsn)
    payload = dict(event)
    event_id = str(payload.setdefault("event_id", uuid.uuid4().hex))
    if add_timestamp:
        payload.setdefault("timestamp", time.time())
    body = "\n".join(
        json.dumps(part) for part in ({"event_id": event_id}, {"type": "event"}, payload)
    )
    response = httpx.post(
        f"{base}/api/{project_id}/envelope/",
        content=body.encode(),
        headers={
            "X-Sentry-Auth": f"Sentry sentry_key={key}, sentry_version=7, sentry_client=lab/1.0",
            "Content-Type": "application/x-sentry-envelope",
        },
        trust_env=False,
        timeout=60.0,
    )
    if response.status_code != 200:
        raise BugsinkApiError(response)
    return event_id
