"""The main job: one sync with the connections the settings describe.

Shared by the `sync` command and the service, so both run exactly the same thing.
"""

from __future__ import annotations

from bugsink_sync.config import Settings
from bugsink_sync.connections import connect
from bugsink_sync.sync import SyncOptions, SyncReport, run_sync


async def sync_once(settings: Settings, options: SyncOptions | None = None) -> SyncReport:
    """Open clients and store, run one sync, close them; raises SyncAborted or ConfigError."""
    options = options or SyncOptions()
    async with connect(settings, read_only=options.dry_run) as c:
        return await run_sync(c.bugsink, c.gitea, c.store, c.config, options)
