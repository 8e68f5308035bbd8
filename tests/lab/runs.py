"""Run the product against the lab's Bugsink and Gitea: its settings for a test, the
`bugsink-sync` command as a process, or the sync in this process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bugsink_sync.config import Settings, load_settings
from bugsink_sync.connections import connect
from bugsink_sync.report import SyncReport
from bugsink_sync.sync import SyncOptions, run_sync
from tests.lab.bugsink import BugsinkServer
from tests.lab.gitea.fixtures import GiteaRepoFixture


def write_config(
    tmp_path: Path, slugs: list[str], *, project_toml: str = "", extra_toml: str = ""
) -> Path:
    """A config file for these projects (labels bug:backend + env:production)."""
    path = tmp_path / "sync.toml"
    projects = "".join(
        f'[[projects]]\nslug = "{slug}"\nlabels = ["bug:backend", "env:production"]\n'
        f"{project_toml}\n"
        for slug in slugs
    )
    labels = '[labels]\n"bug:backend" = "#ea580c"\n"env:production" = "#dc2626"\n'
    path.write_text(projects + labels + '"source:bugsink" = "#10b981"\n\n' + extra_toml)
    return path


def clean_env() -> dict[str, str]:
    """This process's environment without any of the product's settings."""
    prefixes = ("BUGSINK", "GITEA", "REDIS", "JWT_SECRET")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def service_env(
    bugsink_url: str, bugsink_token: str, gitea: GiteaRepoFixture, config: Path, state: Path
) -> dict[str, str]:
    """The settings that point the product at the lab's services, the sync enabled."""
    return {
        "BUGSINK_URL": bugsink_url,
        "BUGSINK_TOKEN": bugsink_token,
        "GITEA_URL": gitea.url,
        "GITEA_API_TOKEN": gitea.token,
        "GITEA_OWNER": gitea.owner,
        "GITEA_REPO": gitea.repo,
        "BUGSINK_SYNC_ENABLED": "true",
        "BUGSINK_SYNC_CONFIG": str(config),
        "BUGSINK_SYNC_SQLITE_PATH": str(state),
    }


def cli_env(
    bugsink: BugsinkServer | tuple[str, str],
    gitea: GiteaRepoFixture,
    tmp_path: Path,
    slug: str,
    *,
    config_text: str | None = None,
    name: str = "state",
    **extra: str,
) -> dict[str, str]:
    """The environment of a `bugsink-sync` process: one project labelled `env:test` (or
    `config_text`), state in `tmp_path/<name>.sqlite3`. `bugsink` may be (url, token)."""
    url, token = bugsink if isinstance(bugsink, tuple) else (bugsink.url, bugsink.token)
    config = tmp_path / f"{name}.toml"
    config.write_text(config_text or f'[[projects]]\nslug = "{slug}"\nlabels = ["env:test"]\n')
    state = tmp_path / f"{name}.sqlite3"
    return clean_env() | service_env(url, token, gitea, config, state) | extra


def run_cli(
    env: dict[str, str], cwd: Path, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`bugsink-sync ARGS` as a user runs it, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "bugsink_sync.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def make_settings(
    bugsink: BugsinkServer,
    gitea: GiteaRepoFixture,
    tmp_path: Path,
    slugs: list[str],
    *,
    project_toml: str = "",
    extra_toml: str = "",
    **env: str,
) -> Settings:
    """Settings for an in-process sync: SQLite state in `tmp_path`, the sync enabled."""
    config = write_config(tmp_path, slugs, project_toml=project_toml, extra_toml=extra_toml)
    values = service_env(bugsink.url, bugsink.token, gitea, config, tmp_path / "state.sqlite3")
    return load_settings(values | env)


async def sync(settings: Settings, **options: Any) -> SyncReport:
    """One run, as the CLI does it but in this process."""
    async with connect(settings, read_only=options.get("dry_run", False)) as c:
        return await run_sync(c.bugsink, c.gitea, c.store, c.config, SyncOptions(**options))
