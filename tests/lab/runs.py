"""Run the product's sync in-process against the lab's Bugsink and Gitea, with a config file."""

from __future__ import annotations

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
    """Settings for a test: SQLite state in `tmp_path`, the sync enabled."""
    config = write_config(tmp_path, slugs, project_toml=project_toml, extra_toml=extra_toml)
    values = {
        "BUGSINK_URL": bugsink.url,
        "BUGSINK_TOKEN": bugsink.token,
        "GITEA_URL": gitea.url,
        "GITEA_API_TOKEN": gitea.token,
        "GITEA_OWNER": gitea.owner,
        "GITEA_REPO": gitea.repo,
        "BUGSINK_SYNC_ENABLED": "true",
        "BUGSINK_SYNC_SQLITE_PATH": str(tmp_path / "state.sqlite3"),
        "BUGSINK_SYNC_CONFIG": str(config),
    }
    return load_settings(values | env)


async def sync(settings: Settings, **options: Any) -> SyncReport:
    """One run, as the CLI does it but in this process."""
    async with connect(settings, read_only=options.get("dry_run", False)) as c:
        return await run_sync(c.bugsink, c.gitea, c.store, c.config, SyncOptions(**options))
