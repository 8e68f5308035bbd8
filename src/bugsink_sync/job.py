"""The main job: one sync with the connections the settings describe.

Shared by the `sync` command and the service, so both run exactly the same thing.
"""

from __future__ import annotations

from typing import Any

from bugsink_sync.config import Settings
from bugsink_sync.connections import connect
from bugsink_sync.report import SyncAborted, SyncReport
from bugsink_sync.state import StateError
from bugsink_sync.sync import Progress, SyncOptions, run_sync


def options_for(settings: Settings, **choices: Any) -> SyncOptions:
    """Run options from the settings, plus what the caller chooses (dry run, project…)."""
    return SyncOptions(
        body_budget=settings.body_budget, settle_seconds=settings.settle_seconds, **choices
    )


async def sync_once(
    settings: Settings, options: SyncOptions | None = None, progress: Progress | None = None
) -> SyncReport:
    """Open clients and store, take the run lock, run one sync, close them; raises
    SyncAborted or ConfigError."""
    options = options or options_for(settings)
    async with connect(settings, read_only=options.dry_run) as c:
        if options.dry_run:  # reads only: no need to wait for a running sync
            return await run_sync(c.bugsink, c.gitea, c.store, c.config, options, None, progress)
        try:
            async with c.store.lock(settings.lock_wait) as lock:
                return await run_sync(
                    c.bugsink, c.gitea, c.store, c.config, options, lock, progress
                )
        except StateError as exc:  # the lock could not be had: nothing was done
            raise SyncAborted(SyncReport(error=str(exc)), exc) from exc
